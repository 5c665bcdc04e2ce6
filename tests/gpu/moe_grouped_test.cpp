// cuda.moe.grouped_dequant_mma (ops/moe/moe_grouped.cu) against ref::moe_experts on
// random valid weights (fill_random on the device, copied back for the reference) and
// random activations (never zeros); output and workspace poisoned with NaN first.
//
// Bound: relative L2 <= 4e-3 over the output, max |got - ref| <= 2e-2 * max |ref|, NaN or
// inf never passes. Why: the kernel rounds the activations u, the dequantised weights and
// the SwiGLU output to f16 (RNE, unit roundoff u = 2^-11 = 4.9e-4) and accumulates in f32.
// Independent rounding errors of relative rms u/sqrt(3) on both factors give each gate/up
// dot ~ sqrt(2/3)·u = 4e-4 relative; mid's rounding and the down product's weight add two
// more such terms, so ~6e-4 end to end, up to ~2x more where silu's relative slope
// exceeds 1. 4e-3 is ~4x that estimate and far below what a wrong block index or a
// missed slot gives (O(1)); the max-abs bound catches a single corrupted row.
//
// Cases: DS4's types (IQ2_XXS gate/up, Q2_K down) and Q8_0 / Q4_K / F16; n = 1 .. 2048;
// uniform routing, all slots on one expert, one slot per expert, clamps active, bad ids
// (their tokens NaN, every other token exact to the bound), a real-shape layer slice
// (4096 -> 2048 -> 4096), and replays of one captured CUDA graph under changing routing.
#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <numeric>

#include "ops/moe/moe.h"
#include "ops/moe/moe_cuda.h"
#include "ops/quant/quant_cuda.h"
#include "tests/gpu/ops_util.h"

using namespace fp;
using namespace fp::test;

namespace {

constexpr double kRel = 4e-3, kAbsOfMax = 2e-2;

enum class Route { uniform, one_expert, one_slot_each, bad_ids };

struct Experts {
  DevBuf g, u, d;
  std::vector<uint8_t> hg, hu, hd;
  DType gt, dt;
  int64_t NE, dim, ff;
  Experts(DType gt_, DType dt_, int64_t NE_, int64_t dim_, int64_t ff_, uint64_t seed)
      : g(size_t(row_bytes(gt_, dim_) * ff_ * NE_)), u(size_t(row_bytes(gt_, dim_) * ff_ * NE_)),
        d(size_t(row_bytes(dt_, ff_) * dim_ * NE_)), gt(gt_), dt(dt_), NE(NE_), dim(dim_), ff(ff_) {
    cuda::fill_random(gt, g.p, NE * ff * dim, {seed, 0.05f, 0.0f, 0}, nullptr);
    cuda::fill_random(gt, u.p, NE * ff * dim, {seed + 1, 0.05f, 0.0f, 0}, nullptr);
    cuda::fill_random(dt, d.p, NE * dim * ff, {seed + 2, 0.05f, 0.0f, 0}, nullptr);
    hg = g.get<uint8_t>(g.bytes);
    hu = u.get<uint8_t>(u.bytes);
    hd = d.get<uint8_t>(d.bytes);
  }
};

std::vector<int32_t> route(Route r, int64_t n, int64_t K, int64_t NE, std::mt19937_64& rng) {
  std::vector<int32_t> ids(size_t(n * K));
  for (int64_t t = 0; t < n; ++t) {
    std::vector<int32_t> all(static_cast<size_t>(NE));
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng);
    for (int64_t i = 0; i < K; ++i) {
      int32_t& e = ids[size_t(t * K + i)];
      switch (r) {
        case Route::uniform: e = all[size_t(i)]; break;
        case Route::one_expert: e = int32_t(NE / 2); break;
        case Route::one_slot_each: e = int32_t((t * K + i) % NE); break;
        case Route::bad_ids: e = all[size_t(i)]; break;
      }
    }
  }
  if (r == Route::bad_ids)
    for (int64_t t = 0; t < n; t += 3) ids[size_t(t * K + (t % K))] = (t / 3) % 2 ? int32_t(NE + t) : -1 - int32_t(t);
  return ids;
}

// The CPU reference with bad ids replaced by expert 0; tokens with a bad id must come out
// NaN (all of their row), the others within the bound.
void check(const char* what, const Experts& x, const std::vector<float>& u, const std::vector<int32_t>& ids,
           const std::vector<float>& w, int64_t n, int64_t K, float limit, const std::vector<float>& got) {
  std::vector<int32_t> ok_ids = ids;
  std::vector<bool> bad(size_t(n), false);
  for (int64_t q = 0; q < n * K; ++q)
    if (ok_ids[size_t(q)] < 0 || ok_ids[size_t(q)] >= x.NE) {
      ok_ids[size_t(q)] = 0;
      bad[size_t(q / K)] = true;
    }
  std::vector<float> ref(size_t(n * x.dim));
  ref::moe_experts(u.data(), n, ok_ids.data(), w.data(), K, host_weight(x.hg, x.gt, x.ff, x.dim, x.NE, "gate"),
                   host_weight(x.hu, x.gt, x.ff, x.dim, x.NE, "up"), host_weight(x.hd, x.dt, x.dim, x.ff, x.NE, "down"),
                   limit, ref.data());
  std::vector<float> g_ok, r_ok;
  int64_t nan_rows = 0, bad_rows = 0;
  for (int64_t t = 0; t < n; ++t) {
    const auto* gr = got.data() + t * x.dim;
    const auto* rr = ref.data() + t * x.dim;
    if (bad[size_t(t)]) {
      ++bad_rows;
      nan_rows += std::all_of(gr, gr + x.dim, [](float v) { return std::isnan(v); });
    } else {
      g_ok.insert(g_ok.end(), gr, gr + x.dim);
      r_ok.insert(r_ok.end(), rr, rr + x.dim);
    }
  }
  CHECK_MESSAGE(nan_rows == bad_rows, what, ": ", bad_rows - nan_rows, " tokens with a bad id are not all NaN");
  double mx = 0;
  for (float v : r_ok) mx = std::max(mx, double(std::fabs(v)));
  check_close(what, g_ok, r_ok, Bound{kRel, kAbsOfMax * mx});
}

struct Run {
  DevBuf du, dids, dw, dout, work;
  cuda::MoeArgs m;
  Run(const Experts& x, const std::vector<float>& u, const std::vector<int32_t>& ids, const std::vector<float>& w,
      int64_t n, int64_t K, float limit)
      : du(u), dids(ids), dw(w), dout(size_t(n * x.dim) * 4),
        work(size_t(cuda::moe_grouped_work_bytes(n, K, x.dim, x.ff, x.NE))) {
    m.u = du.as<float>();
    m.n = n;
    m.k = K;
    m.ids = dids.as<int32_t>();
    m.weights = dw.as<float>();
    m.gate = dev_weight(x.g, x.gt, x.ff, x.dim, x.NE, "gate");
    m.up = dev_weight(x.u, x.gt, x.ff, x.dim, x.NE, "up");
    m.down = dev_weight(x.d, x.dt, x.dim, x.ff, x.NE, "down");
    m.limit = limit;
    m.out = dout.as<float>();
    m.grouped_work = work.p;
    m.grouped_work_bytes = int64_t(work.bytes);
  }
};

}  // namespace

TEST_CASE("gpu moe grouped: matches ref::moe_experts over types, token counts and routings") {
  std::mt19937_64 rng(41);
  const int64_t dim = 512, ff = 256, K = 6;
  struct Types {
    DType g, d;
    std::vector<int64_t> ns;
  };
  const std::vector<Types> types = {
      {DType::IQ2_XXS, DType::Q2_K, {1, 2, 7, 33, 100, 512, 2048}},
      {DType::Q8_0, DType::Q4_K, {5, 300}},
      {DType::Q4_K, DType::Q8_0, {64}},
      {DType::F16, DType::F16, {65}},
  };
  for (const Types& ty : types) {
    for (int64_t NE : {int64_t(16), int64_t(64)}) {
      const Experts x(ty.g, ty.d, NE, dim, ff, 100 + uint64_t(NE));
      for (int64_t n : ty.ns) {
        for (Route r : {Route::uniform, Route::one_expert, Route::one_slot_each, Route::bad_ids}) {
          if (n > 512 && r != Route::uniform && NE != 64) continue;  // keep the CPU reference short
          CAPTURE(dtype_name(ty.g));
          CAPTURE(dtype_name(ty.d));
          CAPTURE(NE);
          CAPTURE(n);
          CAPTURE(int(r));
          const auto ids = route(r, n, K, NE, rng);
          const float uscale = r == Route::one_slot_each ? 12.0f : 1.0f;  // drives gate/up past the clamp
          const auto u = randn(size_t(n * dim), rng, uscale);
          const auto w = randn(size_t(n * K), rng, 0.3f, 0.5f);
          Run run(x, u, ids, w, n, K, 10.0f);
          cuda::moe_grouped(run.m, nullptr);
          check("moe grouped", x, u, ids, w, n, K, 10.0f, run.dout.get<float>(size_t(n * dim)));
        }
      }
    }
  }
}

TEST_CASE("gpu moe grouped: real DS4 expert shapes (4096 -> 2048 -> 4096, IQ2_XXS / Q2_K)") {
  std::mt19937_64 rng(42);
  const int64_t dim = 4096, ff = 2048, K = 6, NE = 8, n = 48;
  const Experts x(DType::IQ2_XXS, DType::Q2_K, NE, dim, ff, 7);
  const auto ids = route(Route::uniform, n, K, NE, rng);
  const auto u = randn(size_t(n * dim), rng);
  const auto w = randn(size_t(n * K), rng, 0.3f, 0.5f);
  Run run(x, u, ids, w, n, K, 10.0f);
  cuda::moe_grouped(run.m, nullptr);
  check("moe grouped real shapes", x, u, ids, w, n, K, 10.0f, run.dout.get<float>(size_t(n * dim)));
}

TEST_CASE("gpu moe grouped: one captured graph replayed under changing routing; moe() dispatch") {
  std::mt19937_64 rng(43);
  const int64_t dim = 512, ff = 256, K = 6, NE = 32, n = 200;
  const Experts x(DType::IQ2_XXS, DType::Q2_K, NE, dim, ff, 9);
  const auto u = randn(size_t(n * dim), rng);
  const auto w = randn(size_t(n * K), rng, 0.3f, 0.5f);
  auto ids = route(Route::uniform, n, K, NE, rng);
  Run run(x, u, ids, w, n, K, 10.0f);
  cuda::moe_grouped(run.m, nullptr);  // outside capture: tables, shared-memory opt-in
  GPU_CHECK(cudaDeviceSynchronize());
  cudaStream_t s;
  GPU_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  GPU_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
  cuda::moe_grouped(run.m, s);
  GPU_CHECK(cudaStreamEndCapture(s, &graph));
  GPU_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (Route r : {Route::uniform, Route::one_expert, Route::bad_ids, Route::one_slot_each}) {
    CAPTURE(int(r));
    ids = route(r, n, K, NE, rng);
    GPU_CHECK(cudaMemcpy(run.dids.p, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
    run.dout.poison();
    GPU_CHECK(cudaGraphLaunch(exec, s));
    GPU_CHECK(cudaStreamSynchronize(s));
    check("moe grouped graph replay", x, u, ids, w, n, K, 10.0f, run.dout.get<float>(size_t(n * dim)));
  }
  GPU_CHECK(cudaGraphExecDestroy(exec));
  GPU_CHECK(cudaGraphDestroy(graph));
  GPU_CHECK(cudaStreamDestroy(s));

  // moe() takes the grouped path for n >= grouped_min_tokens when given its workspace.
  run.m.grouped_min_tokens = 32;
  ids = route(Route::uniform, n, K, NE, rng);
  GPU_CHECK(cudaMemcpy(run.dids.p, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
  run.dout.poison();
  cuda::LinearWorkspace ws;  // the matvec path would need qact: its absence proves the route
  cuda::moe(run.m, ws, nullptr);
  check("moe() -> grouped", x, u, ids, w, n, K, 10.0f, run.dout.get<float>(size_t(n * dim)));
}
