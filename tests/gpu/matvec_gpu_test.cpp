// Decode matvecs (dense and expert-indexed) against the CPU reference on random weights and
// activations (never zeros), outputs poisoned with NaN first. Stated bounds (relative L2
// over the output vector; NaN or inf never passes):
//   cuda.matvec.<type> with int8 activations vs fp::matmul_q8 (same activation quantiser,
//     exact integer block sums, double accumulation on the CPU, f32 on the GPU): <= 1e-5
//   cuda.matvec.<type> with f32 activations and every .xf32 kernel vs fp::matvec
//     (double accumulation of the exactly dequantised row): <= 1e-5
//   int8-activation kernels vs the f32-activation reference (the activation quantiser's
//     own error, informational): <= 5e-2
#include <doctest/doctest.h>

#include <random>

#include "ops/core/error.h"
#include "ops/quant/dot.h"
#include "ops/quant/quant_cuda.h"
#include "tests/gpu/gpu_util.h"
#include "tests/ops/quant_testdata.h"

using namespace fp;
using namespace fp::test;

namespace {

constexpr double kBound = 1e-5;
constexpr double kActQuantBound = 5e-2;

struct Case {
  int64_t experts, rows, cols;
  std::vector<int32_t> ids;  // empty: dense
  bool per_slot_x = false;
  bool paired = false;  // a second tensor (w2 -> y2) in the same launch, as gate and up
  bool overlap = false;  // MatvecArgs::overlap_prev, right after the kernel writing x
};

struct Result {
  std::vector<float> gpu;
  std::vector<double> ref, ref_f32;  // the kernel's own reference, and the f32-activation one
};

Result run(DType t, bool xf32, const Case& c, std::mt19937_64& rng) {
  const int64_t slots = c.ids.empty() ? 1 : int64_t(c.ids.size());
  const int64_t rb = row_bytes(t, c.cols);
  const std::vector<uint8_t> w = random_weights(t, c.experts * c.rows * c.cols, rng);
  const std::vector<uint8_t> w2 = c.paired ? random_weights(t, c.experts * c.rows * c.cols, rng) : std::vector<uint8_t>{};
  const int64_t nx = (c.per_slot_x ? slots : 1) * c.cols;
  const std::vector<float> x = random_activations(nx, rng);

  cuda::MatvecArgs a;
  a.type = t;
  a.rows = c.rows;
  a.cols = c.cols;
  a.xf32 = xf32;
  a.overlap_prev = c.overlap;
  a.n_slots = int32_t(slots);
  a.x_stride = c.per_slot_x ? c.cols : 0;
  const cuda::ActFormat fmt = cuda::matvec_args_act_format(a);
  DevBuf dw(w), dxf(x), dxq(size_t(cuda::act_bytes(fmt, nx))), dy(size_t(slots * c.rows) * 4);
  DevBuf dw2(c.paired ? w2 : w), dy2(size_t(slots * c.rows) * 4);
  cuda::quantize_activations(fmt, dxf.as<float>(), nx, dxq.p, nullptr);
  std::vector<int32_t> ids = c.ids;
  DevBuf dids(ids.empty() ? std::vector<int32_t>{0} : ids);
  a.w = dw.p;
  a.x = dxq.p;
  a.y = dy.as<float>();
  if (c.paired) {
    a.w2 = dw2.p;
    a.y2 = dy2.as<float>();
  }
  if (!c.ids.empty()) {
    a.ids = dids.as<int32_t>();
    a.n_experts = int32_t(c.experts);
  }
  cuda::matvec(a, nullptr);
  GPU_CHECK(cudaGetLastError());

  // Outputs of w then (paired) of w2, one after the other.
  Result r;
  r.gpu = dy.get<float>(size_t(slots * c.rows));
  if (c.paired) {
    const std::vector<float> g2 = dy2.get<float>(size_t(slots * c.rows));
    r.gpu.insert(r.gpu.end(), g2.begin(), g2.end());
  }
  r.ref.assign(r.gpu.size(), std::nan(""));
  r.ref_f32 = r.ref;
  std::vector<float> y(size_t(c.rows));
  for (int pass = 0; pass < (c.paired ? 2 : 1); ++pass)
    for (int64_t s = 0; s < slots; ++s) {
      const int32_t e = c.ids.empty() ? 0 : c.ids[size_t(s)];
      if (e < 0 || e >= c.experts) continue;  // stays NaN: the kernel must write NaN there too
      const uint8_t* we = (pass ? w2 : w).data() + e * c.rows * rb;
      const float* xs = x.data() + (c.per_slot_x ? s * c.cols : 0);
      const size_t o = size_t((pass * slots + s) * c.rows);
      matvec(t, we, c.rows, c.cols, xs, y.data());
      for (int64_t r0 = 0; r0 < c.rows; ++r0) r.ref_f32[o + size_t(r0)] = y[size_t(r0)];
      if (fmt != cuda::ActFormat::f32) matmul_q8(t, we, c.rows, c.cols, xs, 1, y.data());
      for (int64_t r0 = 0; r0 < c.rows; ++r0) r.ref[o + size_t(r0)] = y[size_t(r0)];
    }
  return r;
}

void check_case(DType t, bool xf32, const Case& c, std::mt19937_64& rng) {
  const std::string type = dtype_name(t);
  CAPTURE(type);
  CAPTURE(xf32);
  CAPTURE(c.rows);
  CAPTURE(c.cols);
  CAPTURE(c.ids.size());
  CAPTURE(c.per_slot_x);
  const Result r = run(t, xf32, c, rng);
  const double err = rel_l2(r.gpu, r.ref);
  CHECK(err <= kBound);
  // The activation quantiser's error is a statistical statement: only over enough outputs.
  const double err_f32 = rel_l2(r.gpu, r.ref_f32);
  if (r.gpu.size() >= 16) CHECK(err_f32 <= kActQuantBound);
  MESSAGE(fp::str(type, xf32 ? " xf32" : "", " [", c.rows, "x", c.cols, "] slots ", c.ids.size(),
                  c.paired ? " paired" : "", ": rel L2 ", err, " (vs f32 activations ", err_f32, ")"));
}

const DType kFast[] = {DType::Q8_0, DType::IQ2_XXS, DType::Q2_K, DType::Q4_K, DType::F16, DType::F32};
const DType kAll[] = {DType::Q8_0, DType::IQ2_XXS, DType::Q2_K, DType::Q4_K, DType::Q5_K, DType::Q6_K,
                      DType::IQ2_XS, DType::IQ3_XXS, DType::Q4_0, DType::BF16, DType::F16, DType::F32};

}  // namespace

TEST_CASE("gpu matvec: default kernels vs CPU, shapes from one block to several chunks") {
  std::mt19937_64 rng(20261104);
  // cols: one block; one chunk; 17 blocks of 256 (rows not 16-aligned for 66/84-byte
  // blocks); several chunks with a partial last one; DS4 sizes.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {1, 256}, {37, 1280}, {64, 4352}, {5, 12544}, {130, 1024}, {33, 4096}, {24, 2048}, {45, 512}, {200, 768}};
  for (DType t : kFast)
    for (const auto& [rows, cols] : shapes) check_case(t, false, {1, rows, cols, {}, false}, rng);
  // Q8_0 rows of 129 blocks: 4386 bytes, not 16-aligned; F16/F32 rows that are not whole vectors.
  check_case(DType::Q8_0, false, {1, 7, 4128, {}, false}, rng);
  check_case(DType::F16, false, {1, 9, 1000, {}, false}, rng);
  check_case(DType::F32, false, {1, 9, 1001, {}, false}, rng);
}

TEST_CASE("gpu matvec .xf32 (generic decoder) vs fp::matvec, every dequantisable type") {
  std::mt19937_64 rng(20261105);
  for (DType t : kAll) {
    check_case(t, true, {1, 19, 2304, {}, false}, rng);
    check_case(t, true, {1, 3, 8192, {}, false}, rng);
  }
}

TEST_CASE("gpu moe matvec: selected experts, shared and per-slot activations") {
  std::mt19937_64 rng(20261106);
  for (DType t : kFast) {
    check_case(t, false, {9, 40, 2048, {3, 0, 8, 5, 1, 7}, false}, rng);
    check_case(t, false, {9, 40, 2048, {3, 0, 8, 5, 1, 7}, true}, rng);
    check_case(t, false, {4, 17, 4608, {2, 2}, true}, rng);  // a repeated id
    check_case(t, false, {7, 24, 2048, {6, 1, 3}, false, true}, rng);  // gate + up in one launch
    check_case(t, false, {3, 9, 4096, {2, 0}, true, true}, rng);
    // Per-slot activations whose slots start 4 and 12 bytes past a 16-byte boundary
    // (q8_k: 1460 and 876 bytes per slot; 4608 columns above: 8), with odd block counts.
    check_case(t, false, {3, 8, 1280, {1, 2, 0}, true}, rng);
    check_case(t, false, {3, 5, 768, {2, 1, 0, 2}, true}, rng);
  }
  // F16 at DS4 decode shapes (whole rows per warp item: 4096 and 1024 columns).
  check_case(DType::F16, false, {1, 256, 4096, {}, false}, rng);
  check_case(DType::F16, false, {1, 1030, 1024, {}, false}, rng);
  check_case(DType::Q8_0, false, {1, 50, 1024, {}, false, true}, rng);  // dense pair
  for (DType t : {DType::Q6_K, DType::IQ3_XXS}) check_case(t, false, {5, 16, 1024, {4, 1, 0}, true}, rng);
}

TEST_CASE("gpu matvec: overlap_prev (programmatic dependent launch) after the activation quantiser") {
  // The matvec may start before the quantiser that writes x has finished: it must still
  // read the new x (the buffer held garbage before) and, for expert calls, the new ids.
  std::mt19937_64 rng(20261109);
  for (DType t : kFast) {
    check_case(t, false, {1, 130, 1024, {}, false, false, true}, rng);
    check_case(t, false, {1, 33, 4096, {}, false, false, true}, rng);
    check_case(t, false, {9, 40, 2048, {3, 0, 8, 5, 1, 7}, true, false, true}, rng);
    check_case(t, false, {7, 24, 2048, {6, 1, 3}, false, true, true}, rng);
  }
  for (DType t : {DType::Q6_K, DType::IQ3_XXS}) check_case(t, false, {5, 16, 1024, {4, 1, 0}, true, false, true}, rng);
}

TEST_CASE("gpu moe matvec: out-of-range ids read nothing and give NaN rows") {
  std::mt19937_64 rng(20261107);
  for (DType t : kFast) {
    const std::string type = dtype_name(t);
    CAPTURE(type);
    const Case c{6, 32, 1024, {2, -1, 6, 5, 1 << 30, 0}, true};
    const Result r = run(t, false, c, rng);
    // Valid slots match their reference; invalid slots are NaN in both (rel_l2 would fail on
    // them), so compare per slot.
    for (size_t s = 0; s < c.ids.size(); ++s) {
      std::vector<float> g(r.gpu.begin() + long(s * 32), r.gpu.begin() + long(s * 32 + 32));
      std::vector<double> w(r.ref.begin() + long(s * 32), r.ref.begin() + long(s * 32 + 32));
      if (c.ids[s] >= 0 && c.ids[s] < 6) {
        CHECK(rel_l2(g, w) <= kBound);
      } else {
        bool all_nan = true;
        for (float v : g) all_nan = all_nan && std::isnan(v);
        CHECK(all_nan);
      }
    }
  }
}

TEST_CASE("gpu matvec: NaN activations reach the output") {
  std::mt19937_64 rng(20261108);
  for (DType t : kFast) {
    const std::string type = dtype_name(t);
    CAPTURE(type);
    const int64_t rows = 8, cols = 1024;
    const std::vector<uint8_t> w = random_weights(t, rows * cols, rng);
    std::vector<float> x = random_activations(cols, rng);
    x[100] = std::numeric_limits<float>::quiet_NaN();
    cuda::MatvecArgs a;
    a.type = t;
    a.rows = rows;
    a.cols = cols;
    const cuda::ActFormat fmt = cuda::matvec_args_act_format(a);
    DevBuf dw(w), dxf(x), dxq(size_t(cuda::act_bytes(fmt, cols))), dy(size_t(rows) * 4);
    cuda::quantize_activations(fmt, dxf.as<float>(), cols, dxq.p, nullptr);
    a.w = dw.p;
    a.x = dxq.p;
    a.y = dy.as<float>();
    cuda::matvec(a, nullptr);
    for (float v : dy.get<float>(size_t(rows))) CHECK(std::isnan(v));
  }
}

TEST_CASE("gpu matvec: bad arguments are errors, not launches") {
  cuda::MatvecArgs a;
  a.type = DType::Q2_K;
  a.rows = 4;
  a.cols = 300;  // not a multiple of 256
  DevBuf b(4096);
  a.w = a.x = b.p;
  a.y = b.as<float>();
  CHECK_THROWS_AS(cuda::matvec(a, nullptr), fp::Error);
  a.cols = 256;
  a.w = b.as<uint8_t>() + 2;  // misaligned base
  CHECK_THROWS_AS(cuda::matvec(a, nullptr), fp::Error);
  a.type = DType::Q8_K;
  a.w = b.p;
  CHECK_THROWS_AS(cuda::matvec(a, nullptr), fp::Error);
}
