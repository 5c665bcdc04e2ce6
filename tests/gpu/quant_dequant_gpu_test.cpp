// Device dequantisation and activation quantisers against the CPU reference and the gguf-py
// oracle. Bound: exact (==, bit for bit; GGUF.md §13), NaN never passes (outputs are
// poisoned with NaN first, so an unwritten element fails).
#include <doctest/doctest.h>

#include <random>

#include "ops/core/half.h"
#include "ops/quant/dequant.h"
#include "ops/quant/quant_cuda.h"
#include "ops/quant/quantize.h"
#include "tests/gpu/gpu_util.h"
#include "tests/ops/quant_testdata.h"

using namespace fp;
using namespace fp::test;

namespace {

const DType kTypes[] = {DType::Q8_0, DType::IQ2_XXS, DType::Q2_K, DType::Q4_K, DType::Q5_K, DType::Q6_K,
                        DType::IQ2_XS, DType::IQ3_XXS, DType::Q4_0, DType::F16, DType::BF16, DType::F32};

// GPU f32 and f16 dequantisation of `blocks` (n elements) against the CPU's f32 values.
void check_dequant(DType t, const std::vector<uint8_t>& blocks, int64_t n, const std::vector<float>& want) {
  DevBuf src(blocks), out(size_t(n) * 4), out16(size_t(n) * 2);
  cuda::dequantize(t, src.p, n, out.as<float>(), nullptr);
  cuda::dequantize_f16(t, src.p, n, out16.p, nullptr);
  const std::vector<float> got = out.get<float>(size_t(n));
  const std::vector<uint16_t> got16 = out16.get<uint16_t>(size_t(n));
  int64_t bad = 0, bad16 = 0, first = -1;
  for (int64_t i = 0; i < n; ++i) {
    if (!same_bits(got[i], want[i]) || std::isnan(got[i])) {
      ++bad;
      if (first < 0) first = i;
    }
    const uint16_t h = f32_to_f16(want[i]);
    if (got16[i] != h || std::isnan(f16_to_f32(got16[i]))) ++bad16;
  }
  INFO(std::string(dtype_name(t)), ": first mismatch at ", first, " of ", n);
  CHECK(bad == 0);
  CHECK(bad16 == 0);
}

}  // namespace

TEST_CASE("gpu dequantize: random blocks == fp::dequantize_row, f32 and f16") {
  std::mt19937_64 rng(20261101);
  for (DType t : kTypes) {
    const std::string type = dtype_name(t);
    CAPTURE(type);
    const int64_t n = 256 * 97;  // odd block counts catch indexing slips
    const std::vector<uint8_t> w = random_weights(t, n, rng);
    std::vector<float> want(static_cast<size_t>(n));
    dequantize_row(t, w.data(), want.data(), n);
    check_dequant(t, w, n, want);
  }
}

TEST_CASE("gpu dequantize: gguf-py oracle blocks, including edge scales") {
  const auto index = quant_index();
  for (const auto& e : index["files"]) {
    const std::string kind = e["kind"];
    if (kind != "blocks" && kind != "edge_blocks") continue;
    const std::string type = e["type"];
    const auto t = dtype_from_name(type);
    REQUIRE(t.has_value());
    if (!cuda::dequant_supported(*t)) continue;  // Q8_K is an activation format
    CAPTURE(type);
    CAPTURE(kind);
    const auto want_entry = quant_entry(index, type, kind == "blocks" ? "dequant_f32" : "edge_dequant_f32");
    const std::vector<uint8_t> blocks = read_bytes(quant_data_dir() + std::string(e["file"]));
    const std::vector<float> want = as_f32(read_bytes(quant_data_dir() + std::string(want_entry["file"])));
    check_dequant(*t, blocks, int64_t(want.size()), want);
  }
}

TEST_CASE("gpu activation quantisers == fp::quantize_row (Q8_0 regrouped, Q8_K bytes)") {
  std::mt19937_64 rng(20261102);
  const int64_t n = 256 * 37;
  std::vector<float> x = random_activations(n, rng);
  x[3] = 1000.0f, x[5] = x[7] = -1000.0f;  // ties on |x|: the first decides Q8_K's sign
  for (int64_t i = 512; i < 768; ++i) x[size_t(i)] = 0.0f;  // an all-zero Q8_K block
  DevBuf dx(x);

  SUBCASE("q8_0") {
    DevBuf q(size_t(cuda::act_bytes(cuda::ActFormat::q8_0, n)));
    cuda::quantize_activations(cuda::ActFormat::q8_0, dx.as<float>(), n, q.p, nullptr);
    const std::vector<uint8_t> got = q.get<uint8_t>(q.bytes);
    std::vector<uint8_t> want(size_t(row_bytes(DType::Q8_0, n)));
    quantize_row(DType::Q8_0, x.data(), want.data(), n);
    int64_t bad = 0;
    for (int64_t b = 0; b < n / 32; ++b) {
      const uint8_t* g = got.data() + (b / 8) * 272;
      const uint8_t* w = want.data() + b * 34;
      if (std::memcmp(g + 32 * (b % 8), w + 2, 32) != 0 || std::memcmp(g + 256 + 2 * (b % 8), w, 2) != 0) ++bad;
    }
    CHECK(bad == 0);
  }
  SUBCASE("q8_k") {
    DevBuf q(size_t(cuda::act_bytes(cuda::ActFormat::q8_k, n)));
    cuda::quantize_activations(cuda::ActFormat::q8_k, dx.as<float>(), n, q.p, nullptr);
    const std::vector<uint8_t> got = q.get<uint8_t>(q.bytes);
    std::vector<uint8_t> want(size_t(row_bytes(DType::Q8_K, n)));
    quantize_row(DType::Q8_K, x.data(), want.data(), n);
    REQUIRE(got.size() == want.size());
    int64_t bad = 0;
    for (size_t i = 0; i < got.size(); ++i) bad += got[i] != want[i];
    CHECK(bad == 0);
  }
}

TEST_CASE("gpu activation quantisers: a non-finite input makes its block's scale NaN") {
  std::mt19937_64 rng(20261103);
  const int64_t n = 512;
  std::vector<float> x = random_activations(n, rng);
  x[300] = std::numeric_limits<float>::quiet_NaN();
  DevBuf dx(x);
  DevBuf q0(size_t(cuda::act_bytes(cuda::ActFormat::q8_0, n))), qk(size_t(cuda::act_bytes(cuda::ActFormat::q8_k, n)));
  cuda::quantize_activations(cuda::ActFormat::q8_0, dx.as<float>(), n, q0.p, nullptr);
  cuda::quantize_activations(cuda::ActFormat::q8_k, dx.as<float>(), n, qk.p, nullptr);
  const auto g0 = q0.get<uint8_t>(q0.bytes);
  const auto gk = qk.get<uint8_t>(qk.bytes);
  uint16_t d0;
  std::memcpy(&d0, g0.data() + 272 + 256 + 2 * ((300 - 256) / 32), 2);
  CHECK(std::isnan(f16_to_f32(d0)));
  float dk;
  std::memcpy(&dk, gk.data() + 292, 4);
  CHECK(std::isnan(dk));
  std::memcpy(&dk, gk.data(), 4);
  CHECK(std::isfinite(dk));
}
