// FP8 E4M3FN, FP4 E2M1, F16 rounding, the Hadamard rotation and the block round trips
// of ops/numerics (MODEL.md §5.7). The rounding functions are checked against a
// brute-force nearest search over every representable value (an independent
// algorithm: linear scan, ties to the even code), on every code, every midpoint, the
// floats just beside each midpoint, saturation, and random values. Torch-generated
// vectors (torch.float8_e4m3fn / float4_e2m1fn_x2) are to be added as test data when
// the lead produces them on the GPU machine.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "ops/numerics/numerics.h"

using namespace fp::ref;

namespace {

struct Grid {
  std::vector<float> values;   // non-negative finite values, ascending
  std::vector<uint8_t> codes;  // their codes
};

Grid fp8_grid() {
  Grid g;
  for (int c = 0; c <= 0x7e; ++c) {
    g.values.push_back(fp8_e4m3_decode(uint8_t(c)));
    g.codes.push_back(uint8_t(c));
  }
  return g;
}

Grid fp4_grid() {
  Grid g;
  for (int c = 0; c < 8; ++c) {
    g.values.push_back(fp4_e2m1_decode(uint8_t(c)));
    g.codes.push_back(uint8_t(c));
  }
  return g;
}

// Nearest representable value by linear scan; ties to the even code; beyond the
// largest value saturate.
float brute_round(const Grid& g, float x) {
  const float ax = std::fabs(x);
  size_t best = 0;
  for (size_t i = 1; i < g.values.size(); ++i) {
    const float di = std::fabs(ax - g.values[i]), db = std::fabs(ax - g.values[best]);
    if (di < db || (di == db && (g.codes[i] & 1) == 0)) best = i;
  }
  const float v = g.values[best];
  return std::signbit(x) ? -v : v;
}

template <typename Round>
void check_against_brute(const Grid& g, Round round, uint64_t seed) {
  std::vector<float> probes;
  for (size_t i = 0; i < g.values.size(); ++i) {
    probes.push_back(g.values[i]);
    if (i + 1 < g.values.size()) {
      const float mid = (g.values[i] + g.values[i + 1]) / 2;  // exact: same binade or a power of two apart
      probes.push_back(mid);
      probes.push_back(std::nextafter(mid, 0.0f));
      probes.push_back(std::nextafter(mid, INFINITY));
    }
  }
  const float top = g.values.back();
  probes.push_back(std::nextafter(top, INFINITY));
  probes.push_back(top * 1.5f);
  probes.push_back(top * 1000.0f);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(0.0f, top * 1.1f);
  for (int i = 0; i < 20000; ++i) probes.push_back(u(rng));
  std::uniform_real_distribution<float> e(-40.0f, 2.0f);
  for (int i = 0; i < 20000; ++i) probes.push_back(std::exp2(e(rng)));
  int bad = 0;
  for (float p : probes) {
    for (float x : {p, -p}) {
      const float want = brute_round(g, x), got = round(x);
      if (!(want == got && std::signbit(want) == std::signbit(got))) {
        if (++bad < 10) FAIL_CHECK("x=", x, " got ", got, " want ", want);
      }
    }
  }
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("fp8 e4m3fn: table, codes and nearest-even rounding") {
  CHECK(fp8_e4m3_decode(0x7e) == 448.0f);
  CHECK(fp8_e4m3_decode(0x01) == std::ldexp(1.0f, -9));
  CHECK(fp8_e4m3_decode(0x08) == std::ldexp(1.0f, -6));
  CHECK(std::isnan(fp8_e4m3_decode(0x7f)));
  CHECK(std::isnan(fp8_e4m3_decode(0xff)));
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;
    const float v = fp8_e4m3_decode(uint8_t(c));
    CAPTURE(c);
    CHECK(fp8_e4m3_round(v) == v);
    if (c != 0x80) CHECK(int(fp8_e4m3_encode(v)) == c);  // -0 encodes as 0x80 too
  }
  CHECK(fp8_e4m3_encode(-0.0f) == 0x80);
  check_against_brute(fp8_grid(), fp8_e4m3_round, 1);
  check_against_brute(fp8_grid(), [](float x) { return fp8_e4m3_decode(fp8_e4m3_encode(x)); }, 2);
  // Two ties by hand: between 1.0 (0x38) and 1.125 (0x39) -> 1.0; between 1.125 and 1.25 -> 1.25.
  CHECK(fp8_e4m3_round(1.0625f) == 1.0f);
  CHECK(fp8_e4m3_round(1.1875f) == 1.25f);
}

TEST_CASE("fp4 e2m1: table, codes and nearest-even rounding") {
  const float expect[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  for (int c = 0; c < 16; ++c) {
    const float v = fp4_e2m1_decode(uint8_t(c));
    CHECK(std::fabs(v) == expect[c & 7]);
    CHECK(fp4_e2m1_round(v) == v);
    if (c != 8) CHECK(int(fp4_e2m1_encode(v)) == c);
  }
  check_against_brute(fp4_grid(), fp4_e2m1_round, 3);
  CHECK(fp4_e2m1_round(0.25f) == 0.0f);
  CHECK(fp4_e2m1_round(0.75f) == 1.0f);
  CHECK(fp4_e2m1_round(2.5f) == 2.0f);
  CHECK(fp4_e2m1_round(3.5f) == 4.0f);
  CHECK(fp4_e2m1_round(5.0f) == 4.0f);
  CHECK(fp4_e2m1_round(100.0f) == 6.0f);
}

TEST_CASE("f16 rounding") {
  CHECK(f16_round(1.0f) == 1.0f);
  CHECK(f16_round(1.0f + std::ldexp(1.0f, -11)) == 1.0f);                               // tie -> even
  CHECK(f16_round(1.0f + 3 * std::ldexp(1.0f, -11)) == 1.0f + std::ldexp(1.0f, -9));    // tie -> even
  CHECK(f16_round(65504.0f) == 65504.0f);
}

TEST_CASE("hadamard: orthonormal Sylvester matrix, its own inverse") {
  for (int64_t n : {1, 2, 4, 32, 128}) {
    std::vector<float> x(static_cast<size_t>(n)), y;
    std::mt19937 rng(7);
    std::normal_distribution<float> d;
    for (auto& v : x) v = d(rng);
    y = x;
    hadamard_inplace(y.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      double want = 0;
      for (int64_t j = 0; j < n; ++j) want += ((__builtin_popcountll(uint64_t(i & j)) & 1) ? -1.0 : 1.0) * x[j];
      want /= std::sqrt(double(n));
      CHECK(std::fabs(y[i] - want) < 1e-5 * (1 + std::fabs(want)));
    }
    hadamard_inplace(y.data(), n);
    for (int64_t i = 0; i < n; ++i) CHECK(std::fabs(y[i] - x[i]) < 1e-5);
  }
  std::vector<float> bad(3);
  CHECK_THROWS(hadamard_inplace(bad.data(), 3));
}

TEST_CASE("fp8 kv round trip: power-of-two block scales, 64-blocks, tail untouched") {
  // Values already on the grid of a power-of-two scale come back unchanged.
  std::vector<float> x(80, 0.0f);
  for (int i = 0; i < 64; ++i) x[i] = fp8_e4m3_decode(uint8_t(i)) * 0.25f;
  x[0] = 448.0f * 0.25f;  // amax/448 = 0.25 exactly -> scale 0.25
  for (int i = 64; i < 80; ++i) x[i] = 0.1f * float(i);  // a second, shorter block
  std::vector<float> y = x;
  fp8_kv_round_trip(y.data(), 64);
  for (int i = 0; i < 64; ++i) CHECK(y[i] == x[i]);
  for (int i = 64; i < 80; ++i) CHECK(y[i] == x[i]);  // beyond n_nope: untouched
  // A partial block is quantised with its own amax.
  fp8_kv_round_trip(y.data(), 80);
  for (int i = 64; i < 80; ++i) {
    const float amax = 0.1f * 79.0f;
    const float scale = std::ldexp(1.0f, int(std::ceil(std::log2(amax / 448.0f))));
    CHECK(y[i] == fp8_e4m3_round(x[i] / scale) * scale);
  }
  // Tiny blocks use the 1e-4 floor, so they still round to a fine grid instead of zero.
  std::vector<float> t(64, 1e-7f);
  fp8_kv_round_trip(t.data(), 64);
  const float s = std::ldexp(1.0f, int(std::ceil(std::log2(1e-4f / 448.0f))));
  CHECK(t[0] == fp8_e4m3_round(1e-7f / s) * s);
}

TEST_CASE("indexer qat: hadamard then fp4 in 32-blocks") {
  std::vector<float> x(64);
  std::mt19937 rng(11);
  std::normal_distribution<float> d;
  for (auto& v : x) v = d(rng);
  std::vector<float> y = x;
  indexer_qat_row(y.data(), 64);
  std::vector<float> h = x;
  hadamard_inplace(h.data(), 64);
  for (int b = 0; b < 2; ++b) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(h[b * 32 + i]));
    const float scale = std::ldexp(1.0f, int(std::ceil(std::log2(amax / 6.0f))));
    for (int i = 0; i < 32; ++i) {
      const float want = fp4_e2m1_round(h[b * 32 + i] / scale) * scale;
      CHECK(y[b * 32 + i] == want);
      // Every output is on the block's grid.
      CHECK(fp4_e2m1_round(y[b * 32 + i] / scale) == y[b * 32 + i] / scale);
    }
  }
}
