// Sampler and its random stream (see sampler.h).
#include "runtime/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "ops/core/error.h"

namespace fp {
namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

Rng::Rng(uint64_t seed) {
  for (auto& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next() {
  const uint64_t result = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

double Rng::uniform() { return double(next() >> 11) * 0x1.0p-53; }

int32_t argmax_token(std::span<const float> logits) {
  if (logits.empty()) fail("sampler: empty logits");
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = i;
  return int32_t(best);
}

Sampler::Sampler(const SamplerOptions& o) : o_(o), rng_(o.seed) {
  if (!(o.top_p > 0.0f)) fail("sampler: top-p ", o.top_p, ", expected > 0");
  if (o.top_k < 0) fail("sampler: top-k ", o.top_k, ", expected >= 0");
  if (o.min_p < 0.0f || o.min_p > 1.0f) fail("sampler: min-p ", o.min_p, ", expected in [0, 1]");
  if (!std::isfinite(o.temperature)) fail("sampler: temperature ", o.temperature, ", expected a finite number");
}

int32_t Sampler::sample(std::span<const float> logits) {
  if (greedy()) return argmax_token(logits);
  const size_t n = logits.size();
  if (n == 0) fail("sampler: empty logits");
  std::vector<int32_t> ids(n);
  std::iota(ids.begin(), ids.end(), 0);
  auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  size_t keep = n;
  if (o_.top_k > 0 && size_t(o_.top_k) < n) {
    keep = size_t(o_.top_k);
    std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(), by_logit);
  } else {
    std::sort(ids.begin(), ids.end(), by_logit);
  }
  // Softmax over the kept candidates (sorted by logit, so by probability).
  std::vector<double> p(keep);
  const double mx = double(logits[ids[0]]) / o_.temperature;
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += (p[i] = std::exp(double(logits[ids[i]]) / o_.temperature - mx));
  for (auto& v : p) v /= sum;
  if (o_.top_p < 1.0f) {
    double cum = 0;
    size_t k = 0;
    while (k < keep) {
      cum += p[k++];
      if (cum >= o_.top_p) break;
    }
    keep = std::max<size_t>(k, 1);
  }
  if (o_.min_p > 0.0f) {
    const double floor = double(o_.min_p) * p[0];
    size_t k = 1;
    while (k < keep && p[k] >= floor) ++k;
    keep = k;
  }
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += p[i];
  const double u = rng_.uniform() * total;
  double cum = 0;
  for (size_t i = 0; i < keep; ++i) {
    cum += p[i];
    if (u < cum) return ids[i];
  }
  return ids[keep - 1];
}

}  // namespace fp
