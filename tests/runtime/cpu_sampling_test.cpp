// The sampler (runtime/sampling over the reference in ops/sample): greedy, temperature,
// top-k, top-p, min-p, and the seeded random stream. Distribution checks use fixed
// seeds, so they are deterministic; their bounds are wide enough (> 6 sigma) that no
// seed near them could fail by chance. The fixed-point reference is also checked
// against a plain double-precision softmax walk (the sampler's earlier form), and its
// NaN / inf rules and RNG accounting (what the device sampler must reproduce).
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "runtime/sampling/sampler.h"

using fp::Sampler;
using fp::SamplerOptions;

namespace {

std::vector<float> logits_of(const std::vector<double>& p) {
  std::vector<float> l;
  for (double v : p) l.push_back(float(std::log(v)));
  return l;
}

std::map<int32_t, int> histogram(const SamplerOptions& o, const std::vector<float>& logits, int n) {
  Sampler s(o);
  std::map<int32_t, int> h;
  for (int i = 0; i < n; ++i) ++h[s.sample(logits)];
  return h;
}

}  // namespace

TEST_CASE("sampler: greedy is the argmax, ties to the lower id") {
  Sampler s({});
  CHECK(s.sample(std::vector<float>{0.1f, 3.0f, -1.0f, 3.0f}) == 1);
  CHECK(s.sample(std::vector<float>{5.0f}) == 0);
  CHECK_THROWS(s.sample(std::vector<float>{}));
}

TEST_CASE("sampler: the same seed gives the same tokens, another seed others") {
  std::vector<float> logits(200);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = float(std::sin(double(i) * 0.37));
  SamplerOptions o;
  o.temperature = 1.0f;
  o.seed = 9;
  Sampler a(o), b(o);
  o.seed = 10;
  Sampler c(o);
  int differ = 0;
  for (int i = 0; i < 100; ++i) {
    const int32_t x = a.sample(logits), y = b.sample(logits), z = c.sample(logits);
    CHECK(x == y);
    differ += x != z;
  }
  CHECK(differ > 50);
}

TEST_CASE("sampler: temperature 1 draws the softmax distribution") {
  const std::vector<double> p = {0.5, 0.3, 0.15, 0.05};
  SamplerOptions o;
  o.temperature = 1.0f;
  o.seed = 1;
  const int n = 40000;
  auto h = histogram(o, logits_of(p), n);
  for (size_t i = 0; i < p.size(); ++i) {
    const double sigma = std::sqrt(p[i] * (1 - p[i]) / n);
    CHECK(std::fabs(double(h[int32_t(i)]) / n - p[i]) < 6 * sigma);
  }
  // Temperature 0.5 squares the odds: p ∝ p_i^2.
  o.temperature = 0.5f;
  h = histogram(o, logits_of(p), n);
  double z = 0;
  for (double v : p) z += v * v;
  for (size_t i = 0; i < p.size(); ++i) {
    const double q = p[i] * p[i] / z, sigma = std::sqrt(q * (1 - q) / n);
    CHECK(std::fabs(double(h[int32_t(i)]) / n - q) < 6 * sigma);
  }
}

TEST_CASE("sampler: top-k, top-p and min-p cut the candidates") {
  const std::vector<float> l = logits_of({0.5, 0.3, 0.15, 0.05});
  SamplerOptions o;
  o.temperature = 1.0f;
  o.seed = 3;
  o.top_k = 2;
  auto h = histogram(o, l, 5000);
  CHECK(h.count(2) == 0);
  CHECK(h.count(3) == 0);
  CHECK(h[0] > h[1]);
  o.top_k = 1;
  CHECK(histogram(o, l, 200)[0] == 200);
  o.top_k = 0;
  o.top_p = 0.7f;  // 0.5 + 0.3 reaches 0.7: tokens 0 and 1
  h = histogram(o, l, 5000);
  CHECK(h.count(2) == 0);
  CHECK(h[1] > 0);
  // Renormalised: token 1 has 0.3 / 0.8 of the mass.
  CHECK(std::fabs(h[1] / 5000.0 - 0.375) < 6 * std::sqrt(0.375 * 0.625 / 5000));
  o.top_p = 0.01f;
  CHECK(histogram(o, l, 200)[0] == 200);
  o.top_p = 1.0f;
  o.min_p = 0.5f;  // floor 0.25: tokens 0 and 1
  h = histogram(o, l, 5000);
  CHECK(h.count(2) == 0);
  CHECK(h.count(3) == 0);
  o.min_p = 0.2f;  // floor 0.1: tokens 0, 1, 2
  h = histogram(o, l, 5000);
  CHECK(h.count(3) == 0);
  CHECK(h[2] > 0);
}

TEST_CASE("sampler: bad options are refused") {
  SamplerOptions o;
  o.top_p = 0.0f;
  CHECK_THROWS(Sampler{o});
  o = {};
  o.top_k = -1;
  CHECK_THROWS(Sampler{o});
  o = {};
  o.min_p = 2.0f;
  CHECK_THROWS(Sampler{o});
}

TEST_CASE("rng: xoshiro256** stream is fixed for a seed") {
  fp::Rng a(123), b(123);
  for (int i = 0; i < 10; ++i) CHECK(a.next() == b.next());
  fp::Rng c(0);
  for (int i = 0; i < 1000; ++i) {
    const double u = c.uniform();
    CHECK(u >= 0.0);
    CHECK(u < 1.0);
  }
}

namespace {

// The sampler's earlier form: a double-precision softmax over the sorted candidates
// (finite logits only), walked with the same uniform. Also returns how close the walk
// came to another candidate (relative to the kept mass).
int32_t double_walk(const std::vector<float>& l, const fp::SampleParams& o, double u, double* margin) {
  const size_t n = l.size();
  std::vector<int32_t> ids(n);
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
  size_t keep = o.top_k > 0 && size_t(o.top_k) < n ? size_t(o.top_k) : n;
  std::vector<double> p(keep);
  const double mx = double(l[ids[0]]) / o.temperature;
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) sum += (p[i] = std::exp(double(l[ids[i]]) / o.temperature - mx));
  for (auto& v : p) v /= sum;
  *margin = 1;
  if (o.top_p < 1.0f) {
    double cum = 0;
    size_t k = 0;
    while (k < keep) {
      cum += p[k++];
      *margin = std::min(*margin, std::fabs(cum - o.top_p));
      if (cum >= o.top_p) break;
    }
    keep = std::max<size_t>(k, 1);
  }
  if (o.min_p > 0.0f) {
    const double floor = double(o.min_p) * p[0];
    size_t k = 1;
    while (k < keep && p[k] >= floor) *margin = std::min(*margin, p[k++] - floor);
    if (k < keep) *margin = std::min(*margin, floor - p[k]);
    keep = k;
  }
  double total = 0;
  for (size_t i = 0; i < keep; ++i) total += p[i];
  const double x = u * total;
  double cum = 0;
  for (size_t i = 0; i < keep; ++i) {
    cum += p[i];
    *margin = std::min(*margin, std::fabs(cum - x) / total);
    if (x < cum) return ids[i];
  }
  return ids[keep - 1];
}

}  // namespace

TEST_CASE("sample reference: the fixed-point walk draws what a double softmax walk draws") {
  std::mt19937_64 g(8);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  int draws = 0, near = 0, differ = 0;
  for (size_t n : {1, 2, 50, 5000}) {
    for (int row = 0; row < 20; ++row) {
      std::vector<float> l(n);
      for (auto& x : l) x = row % 4 == 0 ? std::round(nd(g)) : nd(g);  // every 4th row: many ties
      for (int c = 0; c < 25; ++c) {
        fp::SampleParams o;
        o.temperature = std::array<float, 4>{0.3f, 0.8f, 1.0f, 2.0f}[size_t(c % 4)];
        o.top_k = std::array<int, 4>{0, 1, 40, 0}[size_t((c / 4) % 4)];
        o.top_p = std::array<float, 3>{1.0f, 0.9f, 0.3f}[size_t(c % 3)];
        o.min_p = std::array<float, 2>{0.0f, 0.1f}[size_t(c % 2)];
        fp::RngState r = fp::rng_seeded(g()), r2 = r;
        const int32_t got = fp::sample_token(l, o, r);
        double margin = 0;
        const int32_t want = double_walk(l, o, fp::rng_uniform(r2), &margin);
        CHECK(r.s[0] == r2.s[0]);  // one draw each
        ++draws;
        near += margin < 1e-9;
        differ += got != want && margin >= 1e-9;
      }
    }
  }
  MESSAGE(draws, " draws, ", near, " within 1e-9 of a boundary");
  CHECK(differ == 0);
  CHECK(near <= 2);
}

TEST_CASE("sample reference: NaN and inf rows are defined") {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  // Greedy: NaN never wins while a number is left; only NaN gives 0.
  CHECK(fp::argmax_token(std::vector<float>{nan, -inf, 2.0f, nan, 2.0f}) == 2);
  CHECK(fp::argmax_token(std::vector<float>{nan, nan}) == 0);
  CHECK(fp::argmax_token(std::vector<float>{-0.0f, 0.0f}) == 0);  // -0 == +0: the lower id
  fp::SampleParams o;
  o.temperature = 1.0f;
  fp::RngState r = fp::rng_seeded(4);
  // Only NaN: the first id, and the draw is still taken.
  fp::RngState before = r;
  CHECK(fp::sample_token(std::vector<float>(9, nan), o, r) == 0);
  fp::rng_next(before);
  CHECK(r.s[1] == before.s[1]);
  // NaN entries are never drawn; +inf entries share all the mass.
  std::vector<float> l = {nan, 1.0f, inf, 3.0f, nan, inf, -inf};
  std::set<int32_t> seen;
  for (int i = 0; i < 200; ++i) seen.insert(fp::sample_token(l, o, r));
  CHECK(seen == std::set<int32_t>{2, 5});
  l = {nan, 1.0f, 0.5f, -inf, nan};
  seen.clear();
  for (int i = 0; i < 200; ++i) seen.insert(fp::sample_token(l, o, r));
  CHECK(seen == std::set<int32_t>{1, 2});
  // Only -inf (and NaN): uniform over the -inf entries.
  l = {-inf, nan, -inf, -inf};
  std::map<int32_t, int> h;
  for (int i = 0; i < 3000; ++i) ++h[fp::sample_token(l, o, r)];
  CHECK(h.count(1) == 0);
  for (int32_t t : {0, 2, 3}) CHECK(std::abs(h[t] - 1000) < 6 * 26);  // sigma = sqrt(3000 / 3 * 2 / 3)
}

TEST_CASE("sample reference: one draw per sampled token, none when greedy; the state hands over") {
  std::vector<float> l(64);
  for (size_t i = 0; i < l.size(); ++i) l[i] = float(std::cos(double(i) * 0.7));
  SamplerOptions o;
  o.seed = 17;
  Sampler greedy(o);
  for (int i = 0; i < 5; ++i) greedy.sample(l);
  fp::Rng ref(17);
  CHECK(greedy.rng_state().s[0] == ref.state().s[0]);
  o.temperature = 0.9f;
  o.top_p = 0.8f;
  Sampler a(o), b(o);
  for (int i = 0; i < 7; ++i) {
    a.sample(l);
    ref.next();
  }
  for (int k = 0; k < 4; ++k) CHECK(a.rng_state().s[k] == ref.state().s[k]);
  b.set_rng_state(a.rng_state());  // as a device sampler hands its advanced state back
  for (int i = 0; i < 20; ++i) CHECK(a.sample(l) == b.sample(l));
  // The weight scale: any sum of n weights fits 64 bits.
  CHECK(fp::sample_weight_shift(1) == 63);
  CHECK(fp::sample_weight_shift(2) == 62);
  CHECK(fp::sample_weight_shift(3) == 61);
  CHECK(fp::sample_weight_shift(129280) == 46);
  CHECK(129280.0 * std::ldexp(1.0, 46) < std::ldexp(1.0, 64));
  CHECK(fp::sample_weight(1.0f, 1.0f, 0.7, 46) == (uint64_t(1) << 46));
  CHECK(fp::sample_weight(std::nanf(""), 1.0f, 0.7, 46) == 0);
}
