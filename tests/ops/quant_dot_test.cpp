// Dot products and matmuls against dequantise-then-dot in double, on fresh random data.
//
// Bounds (stated per kernel, all relative to S = sum |w_i x_i| or to the reference):
// - dot_f32, every type: |got - ref| <= 6e-8 |ref| + 1e-12 S, where ref is the dot of
//   the dequantised row in double. The products are exact in double, so the only errors
//   are double summation (<= n * 2^-53 S on either side) and one f32 rounding (2^-24).
// - dot_q8: against the dot of dequant(w) and dequant(quantised x) in double, the same
//   bound; against the unquantised x, that plus sum_i |w_i| * c * |d_x(i)|, where c
//   bounds the activation's quantisation error in units of its block scale d_x (0.57 for
//   Q8_0: half a step plus the f16 rounding of d, 127 * 2^-11; 0.501 for Q8_K).
//   For Q2_K, Q4_K and Q5_K add 6e-8 S to both: dequantisation rounds each weight once
//   (the "- dmin*m", GGUF.md §13) while the integer path keeps d*sc*q - dmin*m exact.
#include <doctest/doctest.h>

#include <cmath>

#include "ops/core/error.h"
#include "ops/core/parallel.h"
#include "ops/quant/dequant.h"
#include "ops/quant/dot.h"
#include "ops/quant/lanes.h"
#include "ops/quant/quantize.h"
#include "tests/ops/quant_testdata.h"

using namespace fp;
using test::bits;

namespace {

const DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16,    DType::Q8_0,
                              DType::Q4_0, DType::Q2_K, DType::Q4_K,    DType::Q5_K,
                              DType::Q6_K, DType::IQ2_XXS, DType::IQ2_XS, DType::IQ3_XXS};

std::vector<float> dequant(DType t, const std::vector<uint8_t>& w, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n));
  dequantize_row(t, w.data(), y.data(), n);
  return y;
}

struct Ref {
  double dot = 0, abs = 0;
};

Ref ref_dot(const std::vector<float>& a, const float* b, int64_t n) {
  Ref r;
  for (int64_t i = 0; i < n; ++i) {
    r.dot += double(a[i]) * double(b[i]);
    r.abs += std::fabs(double(a[i]) * double(b[i]));
  }
  return r;
}

bool within(double got, const Ref& r, double extra = 0) {
  return std::fabs(got - r.dot) <= 6e-8 * std::fabs(r.dot) + 1e-12 * r.abs + extra;
}

// Columns per type: a few blocks, and for the float types a length that is not a
// multiple of 16 (the lane tail) nor of the 256-element chunk.
int64_t test_cols(DType t) { return traits(t).block == 1 ? 1000 + 7 : 2048; }

}  // namespace

TEST_CASE("dot_f32 matches dequantise-then-dot in double for every weight type") {
  std::mt19937_64 rng(1234);
  for (DType t : kWeightTypes) {
    INFO(std::string(dtype_name(t)));
    const int64_t n = test_cols(t);
    for (int rep = 0; rep < 8; ++rep) {
      const auto w = test::random_weights(t, n, rng);
      const auto x = test::random_activations(n, rng);
      const auto wd = dequant(t, w, n);
      const Ref r = ref_dot(wd, x.data(), n);
      const float got = dot_f32(t, w.data(), x.data(), n);
      CHECK(within(got, r));
      CHECK(r.abs > 0);
      // Same bits as the f32 dot of the dequantised row: dequantisation is exact and the
      // summation order does not depend on the weight type.
      CHECK(bits(got) == bits(dot_f32(DType::F32, wd.data(), x.data(), n)));
    }
  }
}

TEST_CASE("dot_f32 gives the same bits with and without AVX2, aligned or not") {
  std::mt19937_64 rng(99);
  const bool had = simd::avx2_active();
  for (DType t : kWeightTypes) {
    INFO(std::string(dtype_name(t)));
    const int64_t n = test_cols(t);
    const auto w = test::random_weights(t, n, rng);
    const auto x = test::random_activations(n, rng);
    const float fast = dot_f32(t, w.data(), x.data(), n);
    simd::set_avx2_allowed(false);
    CHECK_FALSE(simd::avx2_active());
    const float scalar = dot_f32(t, w.data(), x.data(), n);
    simd::set_avx2_allowed(true);
    CHECK(bits(fast) == bits(scalar));
    std::vector<uint8_t> shifted(w.size() + 1);  // weights at an odd address
    std::memcpy(shifted.data() + 1, w.data(), w.size());
    CHECK(bits(dot_f32(t, shifted.data() + 1, x.data(), n)) == bits(fast));
  }
  CHECK(simd::avx2_active() == had);
  MESSAGE("AVX2 kernels active on this machine: ", had);
}

TEST_CASE("dot_q8 matches dequantised weights . dequantised activations, within the bound of x") {
  std::mt19937_64 rng(4321);
  for (DType t : kWeightTypes) {
    const auto xt = q8_activation_type(t);
    if (!xt) continue;
    INFO(std::string(dtype_name(t)), " x ", std::string(dtype_name(*xt)));
    const int64_t n = test_cols(t);
    const double c = *xt == DType::Q8_0 ? 0.57 : 0.501;
    const int64_t xblock = traits(*xt).block;
    for (int rep = 0; rep < 8; ++rep) {
      const auto w = test::random_weights(t, n, rng);
      const auto x = test::random_activations(n, rng);
      std::vector<uint8_t> xq(size_t(row_bytes(*xt, n)));
      quantize_row(*xt, x.data(), xq.data(), n);
      const auto wd = dequant(t, w, n);
      // The quantised activations' exact values d * q in double (a Q8_K d is a full f32,
      // so d * q is not always representable in f32), and each element's block scale.
      std::vector<double> xd(static_cast<size_t>(n)), dx(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) {
        const uint8_t* blk = xq.data() + (i / xblock) * traits(*xt).bytes;
        if (*xt == DType::Q8_0) {
          uint16_t hv;
          std::memcpy(&hv, blk, 2);
          dx[i] = f16_to_f32(hv);
          xd[i] = dx[i] * int8_t(blk[2 + i % xblock]);
        } else {
          float f;
          std::memcpy(&f, blk, 4);
          dx[i] = f;
          xd[i] = dx[i] * int8_t(blk[4 + i % xblock]);
        }
      }
      Ref rq;
      for (int64_t i = 0; i < n; ++i) {
        rq.dot += double(wd[i]) * xd[i];
        rq.abs += std::fabs(double(wd[i]) * xd[i]);
      }
      const float got = dot_q8(t, w.data(), xq.data(), n);
      const bool has_min = t == DType::Q2_K || t == DType::Q4_K || t == DType::Q5_K;
      INFO("got ", got, " ref ", rq.dot, " abs ", rq.abs, " rep ", rep);
      CHECK(within(got, rq, has_min ? 6e-8 * rq.abs : 0.0));

      // Activation quantisation error: per element, then its effect on the dot.
      double extra = 0;
      bool elem_ok = true;
      for (int64_t i = 0; i < n; ++i) {
        elem_ok = elem_ok && std::fabs(double(x[i]) - xd[i]) <= c * std::fabs(dx[i]);
        extra += std::fabs(double(wd[i])) * c * std::fabs(dx[i]);
      }
      CHECK(elem_ok);
      const Ref rx = ref_dot(wd, x.data(), n);
      CHECK(within(got, rx, extra + (has_min ? 6e-8 * rx.abs : 0.0)));
    }
  }
  CHECK_FALSE(q8_activation_type(DType::F16).has_value());
  uint8_t buf[1024] = {};
  CHECK_THROWS_AS(dot_q8(DType::F32, buf, buf, 32), fp::Error);
}

TEST_CASE("matmul = per-row dot_f32, bit for bit, for every thread count") {
  std::mt19937_64 rng(77);
  const int saved = thread_count();
  for (DType t : {DType::F32, DType::F16, DType::Q8_0, DType::Q4_K, DType::Q2_K, DType::IQ2_XXS}) {
    INFO(std::string(dtype_name(t)));
    const int64_t cols = traits(t).block == 1 ? 520 : 512, rows = 700, n_tok = 3;
    const auto w = test::random_weights(t, rows * cols, rng);
    const auto x = test::random_activations(cols * n_tok, rng);
    const int64_t rb = row_bytes(t, cols);

    std::vector<float> want(size_t(rows * n_tok));
    for (int64_t k = 0; k < n_tok; ++k)
      for (int64_t r = 0; r < rows; ++r)
        want[k * rows + r] = dot_f32(t, w.data() + r * rb, x.data() + k * cols, cols);

    for (int threads : {1, 2, 3}) {
      INFO("threads ", threads);
      set_thread_count(threads);
      std::vector<float> y(size_t(rows * n_tok), std::nanf(""));
      matmul(t, w.data(), rows, cols, x.data(), n_tok, y.data());
      CHECK(std::memcmp(y.data(), want.data(), y.size() * 4) == 0);
      std::vector<float> v(size_t(rows), std::nanf(""));
      matvec(t, w.data(), rows, cols, x.data() + cols, v.data());
      CHECK(std::memcmp(v.data(), want.data() + rows, v.size() * 4) == 0);

      const auto xt = q8_activation_type(t);
      if (!xt) continue;
      std::vector<uint8_t> xq(size_t(row_bytes(*xt, cols) * n_tok));
      for (int64_t k = 0; k < n_tok; ++k)
        quantize_row(*xt, x.data() + k * cols, xq.data() + k * row_bytes(*xt, cols), cols);
      std::vector<float> yq(size_t(rows * n_tok), std::nanf(""));
      matmul_q8(t, w.data(), rows, cols, x.data(), n_tok, yq.data());
      bool same = true;
      for (int64_t k = 0; k < n_tok; ++k)
        for (int64_t r = 0; r < rows; ++r)
          same = same && bits(yq[k * rows + r]) ==
                             bits(dot_q8(t, w.data() + r * rb, xq.data() + k * row_bytes(*xt, cols), cols));
      CHECK(same);
    }
  }
  set_thread_count(saved);
}

TEST_CASE("matmul rejects unsupported types and ragged rows, naming them") {
  std::vector<uint8_t> w(4096);
  std::vector<float> x(256), y(4);
  try {
    matvec(DType::Q3_K, w.data(), 1, 256, x.data(), y.data());
    FAIL("Q3_K matvec should fail");
  } catch (const fp::Error& e) {
    CHECK(std::string(e.what()).find("Q3_K") != std::string::npos);
  }
  CHECK_THROWS_AS(matvec(DType::Q8_0, w.data(), 1, 100, x.data(), y.data()), fp::Error);
  CHECK_THROWS_AS(dot_f32(DType::Q4_K, w.data(), x.data(), 32), fp::Error);
}
