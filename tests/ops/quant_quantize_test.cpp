// Quantisation against gguf-py's outputs (tests/data/quant/T.quant_*): byte-identical
// for Q8_0, Q4_0, F16 and BF16. Q8_K has no oracle (gguf-py lacks it), so it is checked
// against its definition in GGUF.md §11 by properties that an off-by-one would break.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "ops/core/error.h"
#include "ops/quant/dequant.h"
#include "ops/quant/quantize.h"
#include "tests/ops/quant_testdata.h"

using namespace fp;

TEST_CASE("quantize_row is byte-identical to gguf-py for Q8_0, Q4_0, F16, BF16") {
  const auto index = test::quant_index();
  int checked = 0;
  for (const auto& in : index["files"]) {
    if (in["kind"] != "quant_in_f32") continue;
    const std::string type = in["type"];
    INFO(type);
    const auto out = test::quant_entry(index, type, "quant_out_blocks");
    const auto t = dtype_from_name(type);
    REQUIRE(t.has_value());
    const auto x = test::as_f32(test::read_bytes(test::quant_data_dir() + std::string(in["file"])));
    const auto want = test::read_bytes(test::quant_data_dir() + std::string(out["file"]));
    const int64_t n = in["n_elements"];
    REQUIRE(int64_t(x.size()) == n);
    REQUIRE(int64_t(want.size()) == row_bytes(*t, n));
    std::vector<uint8_t> got(want.size(), 0xCD);  // poison
    quantize_row(*t, x.data(), got.data(), n);
    int64_t bad = 0, first = -1;
    for (size_t i = 0; i < got.size(); ++i)
      if (got[i] != want[i]) {
        if (first < 0) first = int64_t(i);
        ++bad;
      }
    if (bad) INFO("first differing byte ", first, " of block ", first / traits(*t).bytes);
    CHECK(bad == 0);
    ++checked;
  }
  CHECK(checked == 4);
}

TEST_CASE("Q8_K quantisation follows quantize_row_q8_K_ref") {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int nb = 16;
  std::vector<float> x(256 * nb);
  for (auto& v : x) v = nd(rng);
  for (int j = 0; j < 256; ++j) x[256 * 3 + j] = 0.0f;      // block 3: all zeros
  x[256 * 5 + 17] = 9.0f; x[256 * 5 + 40] = -9.0f;          // block 5: tie, first wins (+)
  x[256 * 6 + 2] = -9.0f; x[256 * 6 + 90] = 9.0f;           // block 6: tie, first wins (-)
  // Block 7: max = -127 makes iscale exactly 1, so these land on .5 ties.
  const float ties[] = {-127.0f, 2.5f, 3.5f, -0.5f, 126.5f, -4.5f};
  for (int j = 0; j < 6; ++j) x[256 * 7 + j] = ties[j];
  std::vector<uint8_t> q(row_bytes(DType::Q8_K, x.size()));
  quantize_row(DType::Q8_K, x.data(), q.data(), int64_t(x.size()));
  for (int b = 0; b < nb; ++b) {
    INFO("block ", b);
    const uint8_t* blk = q.data() + 292 * b;
    const float* xb = x.data() + 256 * b;
    float d;
    std::memcpy(&d, blk, 4);
    const int8_t* qs = reinterpret_cast<const int8_t*>(blk + 4);
    if (b == 3) {
      CHECK(d == 0.0f);
      for (int j = 0; j < 256; ++j) CHECK(qs[j] == 0);
      continue;
    }
    float amax = 0, max = 0;
    for (int j = 0; j < 256; ++j)
      if (std::fabs(xb[j]) > amax) { amax = std::fabs(xb[j]); max = xb[j]; }
    const float iscale = -127.0f / max;
    CHECK(test::bits(d) == test::bits(1.0f / iscale));
    if (b == 5) CHECK(d < 0);   // max = +9 (first) -> d negative
    if (b == 6) CHECK(d > 0);
    if (b == 7) {
      CHECK(d == 1.0f);
      CHECK(qs[0] == -127); CHECK(qs[1] == 2); CHECK(qs[2] == 4);
      CHECK(qs[3] == 0); CHECK(qs[4] == 126); CHECK(qs[5] == -4);
    }
    for (int j = 0; j < 256; ++j) {
      const float v = iscale * xb[j];
      const float r = std::nearbyint(v);
      CHECK(int(qs[j]) == std::min(127, int(r)));
      CHECK(std::fabs(float(qs[j]) - v) <= 0.5f);
      if (std::fabs(v - std::trunc(v)) == 0.5f) CHECK(int(qs[j]) % 2 == 0);  // ties to even
    }
    for (int s = 0; s < 16; ++s) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += qs[16 * s + j];
      int16_t bs;
      std::memcpy(&bs, blk + 260 + 2 * s, 2);
      CHECK(bs == sum);
    }
  }
  // Round trip: dequantised value within half a step of the input.
  std::vector<float> y(x.size());
  dequantize_row(DType::Q8_K, q.data(), y.data(), int64_t(x.size()));
  for (int b = 0; b < nb; ++b) {
    float d;
    std::memcpy(&d, q.data() + 292 * b, 4);
    for (int j = 0; j < 256; ++j)
      CHECK(std::fabs(y[256 * b + j] - x[256 * b + j]) <= 0.5001f * std::fabs(d));
  }
}

TEST_CASE("quantize_row rejects types it cannot make, naming them") {
  float x[256] = {1.0f};
  uint8_t out[400];
  CHECK(can_quantize(DType::Q8_0));
  CHECK_FALSE(can_quantize(DType::Q4_K));
  try {
    quantize_row(DType::IQ2_XXS, x, out, 256);
    FAIL("IQ2_XXS quantisation should fail");
  } catch (const fp::Error& e) {
    CHECK(std::string(e.what()).find("IQ2_XXS") != std::string::npos);
  }
  CHECK_THROWS_AS(quantize_row(DType::Q8_0, x, out, 33), fp::Error);
}
