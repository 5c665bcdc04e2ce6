// The sampler (runtime/sampling): greedy, temperature, top-k, top-p, min-p, and the
// seeded random stream. Distribution checks use fixed seeds, so they are
// deterministic; their bounds are wide enough (> 6 sigma) that no seed near them
// could fail by chance.
#include <doctest/doctest.h>

#include <cmath>
#include <map>
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
