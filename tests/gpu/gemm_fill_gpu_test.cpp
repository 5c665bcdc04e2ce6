// The prefill GEMM baseline (dequantise to f16 + cuBLAS) and the random weight fill.
// Bounds: GEMM vs a double-precision product of the same f16-rounded W and X: relative L2
// <= 1e-4 (f32 tensor-core accumulation; f16 rounding itself is in the reference); vs the
// unrounded f32 product <= 2e-3 (the f16 rounding of W and X). Random fill: every value
// finite, within the promised range, and not all equal.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>

#include "ops/core/error.h"
#include "ops/core/half.h"
#include "ops/quant/dequant.h"
#include "ops/quant/quant_cuda.h"
#include "tests/gpu/gpu_util.h"
#include "tests/ops/quant_testdata.h"

using namespace fp;
using namespace fp::test;

TEST_CASE("gpu gemm dequant_cublas_f16 vs CPU, several tiles") {
  std::mt19937_64 rng(20261109);
  for (DType t : {DType::Q8_0, DType::Q2_K, DType::IQ2_XXS, DType::F16}) {
    const std::string type = dtype_name(t);
    CAPTURE(type);
    const int64_t rows = 200, cols = 1024, n_tok = 7, tile = 64;
    const std::vector<uint8_t> w = random_weights(t, rows * cols, rng);
    const std::vector<float> x = random_activations(n_tok * cols, rng);
    std::vector<float> wf(size_t(rows * cols));
    dequantize_row(t, w.data(), wf.data(), rows * cols);
    std::vector<double> ref16(size_t(n_tok * rows)), ref32(ref16.size());
    for (int64_t k = 0; k < n_tok; ++k)
      for (int64_t r = 0; r < rows; ++r) {
        double a = 0, b = 0;
        for (int64_t c = 0; c < cols; ++c) {
          const float wv = wf[size_t(r * cols + c)], xv = x[size_t(k * cols + c)];
          a += double(f16_to_f32(f32_to_f16(wv))) * double(f16_to_f32(f32_to_f16(xv)));
          b += double(wv) * double(xv);
        }
        ref16[size_t(k * rows + r)] = a;
        ref32[size_t(k * rows + r)] = b;
      }
    DevBuf dw(w), dx(x), dy(size_t(n_tok * rows) * 4);
    DevBuf ws(size_t(cuda::CublasGemm::workspace_bytes(cols, n_tok, tile)));
    cuda::CublasGemm g(nullptr);
    g.run(t, dw.p, rows, cols, dx.as<float>(), n_tok, dy.as<float>(), ws.p, int64_t(ws.bytes), tile);
    const std::vector<float> got = dy.get<float>(size_t(n_tok * rows));
    const double e16 = rel_l2(got, ref16), e32 = rel_l2(got, ref32);
    MESSAGE(fp::str(type, " gemm: rel L2 ", e16, " vs f16-rounded inputs, ", e32, " vs f32"));
    CHECK(e16 <= 1e-4);
    CHECK(e32 <= 2e-3);
  }
}

TEST_CASE("gpu fill_random: valid blocks of every type, finite and in range") {
  const DType types[] = {DType::Q8_0, DType::IQ2_XXS, DType::Q2_K, DType::Q4_K, DType::Q5_K, DType::Q6_K,
                         DType::IQ2_XS, DType::IQ3_XXS, DType::Q4_0, DType::F16, DType::BF16, DType::F32};
  for (DType t : types) {
    const std::string type = dtype_name(t);
    CAPTURE(type);
    const int64_t n = 256 * 301;
    DevBuf d(size_t(row_bytes(t, n)));
    const float scale = 0.05f;
    cuda::fill_random(t, d.p, n, {77, scale, 0.0f, 0}, nullptr);
    const std::vector<uint8_t> bytes = d.get<uint8_t>(d.bytes);
    std::vector<float> v(static_cast<size_t>(n));
    dequantize_row(t, bytes.data(), v.data(), n);
    bool finite = true;
    float lo = v[0], hi = v[0];
    for (float f : v) {
      finite = finite && std::isfinite(f);
      lo = std::min(lo, f);
      hi = std::max(hi, f);
    }
    CHECK(finite);
    CHECK(hi > lo);
    CHECK(std::max(-lo, hi) <= 1.01f * scale);
    // Same seed, same bytes; another seed, other bytes.
    DevBuf d2(d.bytes), d3(d.bytes);
    cuda::fill_random(t, d2.p, n, {77, scale, 0.0f, 0}, nullptr);
    cuda::fill_random(t, d3.p, n, {78, scale, 0.0f, 0}, nullptr);
    CHECK(d2.get<uint8_t>(d.bytes) == bytes);
    CHECK(d3.get<uint8_t>(d.bytes) != bytes);
  }
  SUBCASE("I32 in [0, range)") {
    DevBuf d(4 * 10000);
    cuda::fill_random(DType::I32, d.p, 10000, {5, 0.0f, 0.0f, 256}, nullptr);
    const std::vector<int32_t> v = d.get<int32_t>(10000);
    CHECK(*std::min_element(v.begin(), v.end()) >= 0);
    CHECK(*std::max_element(v.begin(), v.end()) < 256);
    CHECK(*std::max_element(v.begin(), v.end()) > 200);
  }
}
