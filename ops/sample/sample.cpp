// The sampling family's CPU reference (see sample.h): the candidates sorted by (order key
// desc, id asc) -- partially, when top-k keeps fewer than all -- then integer prefix sums
// of the fixed-point weights, walked as the device walks them.
#include "ops/sample/sample.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include "ops/core/error.h"

namespace fp {

void check_sample_params(const SampleParams& p) {
  if (!(p.top_p > 0.0f)) fail("sampler: top-p ", p.top_p, ", expected > 0");
  if (p.top_k < 0) fail("sampler: top-k ", p.top_k, ", expected >= 0");
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) fail("sampler: min-p ", p.min_p, ", expected in [0, 1]");
  if (!std::isfinite(p.temperature)) fail("sampler: temperature ", p.temperature, ", expected a finite number");
}

int32_t argmax_token(std::span<const float> logits) {
  if (logits.empty()) fail("sampler: empty logits");
  size_t best = 0;
  uint32_t best_key = sample_order_key(logits[0]);
  for (size_t i = 1; i < logits.size(); ++i) {
    const uint32_t k = sample_order_key(logits[i]);
    if (k > best_key) {
      best = i;
      best_key = k;
    }
  }
  return int32_t(best);
}

namespace {

constexpr uint64_t kNone = ~uint64_t(0);

uint64_t gap(uint64_t a, uint64_t b) { return a > b ? a - b : b - a; }

}  // namespace

int32_t sample_token(std::span<const float> logits, const SampleParams& p, RngState& rng, SampleTrace* trace) {
  check_sample_params(p);
  const size_t n = logits.size();
  if (n == 0) fail("sampler: empty logits");
  if (p.temperature <= 0.0f) return argmax_token(logits);
  const double u = rng_uniform(rng);  // the one draw, whatever the row holds

  std::vector<uint32_t> key(n);
  for (size_t i = 0; i < n; ++i) key[i] = sample_order_key(logits[i]);
  std::vector<int32_t> ids(n);
  std::iota(ids.begin(), ids.end(), 0);
  auto before = [&](int32_t a, int32_t b) { return key[size_t(a)] > key[size_t(b)] || (key[size_t(a)] == key[size_t(b)] && a < b); };
  const size_t K = p.top_k > 0 && size_t(p.top_k) < n ? size_t(p.top_k) : n;
  if (K < n)
    std::partial_sort(ids.begin(), ids.begin() + K, ids.end(), before);
  else
    std::sort(ids.begin(), ids.end(), before);
  if (key[size_t(ids[0])] == 0) return ids[0];  // only NaN: no mass anywhere

  const int shift = sample_weight_shift(int64_t(n));
  const float top = logits[size_t(ids[0])];
  std::vector<uint64_t> w(K), C(K);
  uint64_t acc = 0;
  for (size_t j = 0; j < K; ++j) {
    w[j] = sample_weight(logits[size_t(ids[j])], top, double(p.temperature), shift);
    C[j] = acc += w[j];
  }

  SampleTrace tr;
  size_t keep = K;
  if (p.top_p < 1.0f) {
    const uint64_t target = sample_scaled_ceil(p.top_p, C[K - 1]);
    const size_t j = size_t(std::lower_bound(C.begin(), C.end(), target) - C.begin());  // first C[j] >= target
    if (j < K) {
      keep = j + 1;
      tr.top_p_margin = std::min(C[j] - target, j > 0 ? target - C[j - 1] : kNone);
    } else {
      tr.top_p_margin = target - C[K - 1];
    }
  }
  if (p.min_p > 0.0f) {
    const uint64_t floor_w = sample_scaled_ceil(p.min_p, w[0]);
    size_t k = 1;
    while (k < keep && w[k] >= floor_w) ++k;
    if (k > 1) tr.min_p_margin = w[k - 1] - floor_w;
    if (k < keep) tr.min_p_margin = std::min(tr.min_p_margin, gap(floor_w, w[k]));
    keep = k;
  }
  const uint64_t total = C[keep - 1];
  const uint64_t t = sample_draw_threshold(u, total);
  size_t j = size_t(std::upper_bound(C.begin(), C.begin() + std::ptrdiff_t(keep), t) - C.begin());  // first C[j] > t
  if (j == keep) j = keep - 1;
  tr.keep = int64_t(keep);
  tr.total = total;
  tr.threshold = t;
  tr.draw_margin = std::min(gap(C[j], t), j > 0 ? gap(t, C[j - 1]) : kNone);
  if (trace) *trace = tr;
  return ids[j];
}

}  // namespace fp
