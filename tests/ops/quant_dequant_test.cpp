// Dequantisation against every gguf-py vector in tests/data/quant/ (random and edge
// blocks of each type): == on every element, NaN never passes, and the bits must match
// too (so -0 vs +0 is caught).
#include <doctest/doctest.h>

#include <cmath>
#include <set>

#include "ops/core/error.h"
#include "ops/quant/dequant.h"
#include "ops/quant/lanes.h"
#include "tests/ops/quant_testdata.h"

using namespace fp;
using fp::test::bits;

namespace {

// Dequantise blocks_file and compare with f32_file, both as listed in the index.
void check_pair(const nlohmann::json& blocks, const nlohmann::json& out) {
  const std::string type = blocks["type"];
  INFO("type ", type, " file ", std::string(blocks["file"]));
  const auto t = dtype_from_name(type);
  REQUIRE(t.has_value());
  REQUIRE(traits(*t).block == blocks["block_size"].get<int64_t>());
  REQUIRE(traits(*t).bytes == blocks["type_size"].get<int64_t>());
  const auto raw = test::read_bytes(test::quant_data_dir() + std::string(blocks["file"]));
  const auto want = test::as_f32(test::read_bytes(test::quant_data_dir() + std::string(out["file"])));
  const int64_t n = blocks["n_elements"];
  REQUIRE(int64_t(raw.size()) == blocks["bytes"].get<int64_t>());
  REQUIRE(int64_t(raw.size()) == row_bytes(*t, n));
  REQUIRE(int64_t(want.size()) == n);

  std::vector<float> got(size_t(n), std::nanf(""));  // poison: unwritten elements fail
  dequantize_row(*t, raw.data(), got.data(), n);
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < n; ++i)
    if (!(got[i] == want[i]) || bits(got[i]) != bits(want[i])) {
      if (first < 0) first = i;
      ++bad;
    }
  if (bad) INFO("first mismatch at ", first, ": got ", got[first], " want ", want[first]);
  CHECK(bad == 0);

  // Block-by-block through the kernel pointer gives the same bits (the dot products use it).
  const auto fn = dequant_blocks_fn(*t);
  REQUIRE(bool(fn));
  std::vector<float> one(size_t(traits(*t).block));
  const int64_t nb = n / traits(*t).block;
  bool same = true;
  for (int64_t b = 0; b < nb; ++b) {
    fn(raw.data() + b * traits(*t).bytes, one.data(), 1);
    same = same && std::memcmp(one.data(), got.data() + b * traits(*t).block, one.size() * 4) == 0;
  }
  CHECK(same);
}

}  // namespace

TEST_CASE("dequantize_row matches every gguf-py vector bit for bit") {
  const auto index = test::quant_index();
  std::set<std::string> seen;
  // Both the AVX2 kernels (where the machine has them) and the scalar ones.
  for (const bool avx2 : {true, false})
  for (const auto& e : index["files"]) {
    simd::set_avx2_allowed(avx2);
    INFO("avx2 allowed: ", avx2, ", active: ", simd::avx2_active());
    std::string kind = e["kind"];
    if (kind != "blocks" && kind != "edge_blocks") continue;
    const std::string out_kind = kind == "blocks" ? "dequant_f32" : "edge_dequant_f32";
    check_pair(e, test::quant_entry(index, e["type"], out_kind));
    seen.insert(std::string(e["type"]) + "/" + kind);
  }
  simd::set_avx2_allowed(true);
  // Every oracle type was exercised, random and edge (F16/BF16 have no edge files).
  for (const char* t : {"Q8_0", "Q4_0", "Q2_K", "Q4_K", "Q5_K", "Q6_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS"}) {
    CHECK(seen.count(std::string(t) + "/blocks") == 1);
    CHECK(seen.count(std::string(t) + "/edge_blocks") == 1);
  }
  CHECK(seen.count("F16/blocks") == 1);
  CHECK(seen.count("BF16/blocks") == 1);
}

TEST_CASE("can_dequantize agrees with the type table and rejects the rest by name") {
  const std::set<DType> ours = {DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q8_0,
                                DType::Q2_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K,
                                DType::IQ2_XXS, DType::IQ2_XS, DType::IQ3_XXS};
  for (uint32_t id = 0; id < 64; ++id) {
    const auto tr = type_traits(id);
    if (!tr) continue;
    INFO(tr->name);
    CHECK(can_dequantize(tr->type) == (ours.count(tr->type) == 1));
    CHECK(tr->dequant == can_dequantize(tr->type));
  }
  uint8_t blk[110] = {};
  float out[256];
  try {
    dequantize_row(DType::Q3_K, blk, out, 256);
    FAIL("Q3_K should not dequantise");
  } catch (const fp::Error& e) {
    CHECK(std::string(e.what()).find("Q3_K") != std::string::npos);
  }
  CHECK_THROWS_AS(dequantize_row(DType::Q4_K, blk, out, 100), fp::Error);  // not a multiple of 256
}

TEST_CASE("Q8_K dequantises as d * qs (no oracle: gguf-py has no Q8_K)") {
  // Written from GGUF.md §11 directly: f32 d at 0, int8 qs at 4; bsums are ignored.
  std::vector<uint8_t> blk(292, 0);
  const float d = -0.0123f;
  std::memcpy(blk.data(), &d, 4);
  for (int e = 0; e < 256; ++e) blk[4 + e] = uint8_t(int8_t(e - 128));
  for (int i = 260; i < 292; ++i) blk[i] = 0xA5;
  std::vector<float> y(256);
  dequantize_row(DType::Q8_K, blk.data(), y.data(), 256);
  for (int e = 0; e < 256; ++e) CHECK(bits(y[e]) == bits(d * float(e - 128)));
}
