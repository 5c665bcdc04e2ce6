// `flashplan tune --plan PLAN [-o FRAGMENT.yaml] [--quick]`: on this GPU, every valid kernel
// of each product the plan chose among several (planner/profile/tune_targets.h: matmul and
// grouped_matmul shape keys), timed on random valid weights of the node's dtype and shape
// as `bench-kernels` times (a graph of back-to-back calls rotating over weight copies that
// span >= 512 MiB, so weights come from HBM as in a decoded token), and written as a
// profile's `measured.kernels` fragment. Merged into the device profile, the next
// `flashplan compile` chooses between measured times. The nodes' inputs are random too:
// these kernels' time does not depend on the values.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "ops/core/error.h"
#include "ops/linear/linear_cuda.h"
#include "ops/quant/quant_cuda.h"
#include "planner/plan_io/plan_io.h"
#include "planner/profile/calibrate.h"
#include "planner/profile/tune_targets.h"
#include "runtime/cuda/executor.h"
#include "tools/bench_report.h"
#include "tools/build_commit.h"
#include "tools/command.h"
#include "tools/cuda_bench.h"

namespace fp::cli::tune {
namespace {

using cuda_bench::Buf;
using cuda_bench::ck;
using cuda_bench::time_calls;

// The linear family's path for a plan kernel id, or why tune cannot time it.
std::string path_of(const std::string& id, const TuneTarget& t, cuda::LinearPath& path) {
  cuda::ProductKernel k{};
  const std::string why = cuda::product_kernel_for(id, t.op, t.type, k);
  if (!why.empty()) return why;
  switch (k) {
    case cuda::ProductKernel::matvec: path = cuda::LinearPath::matvec; return "";
    case cuda::ProductKernel::matvec_xf32: path = cuda::LinearPath::matvec_xf32; return "";
    case cuda::ProductKernel::gemm_dequant_f16: path = cuda::LinearPath::gemm; return "";
    default: return "not a linear-family kernel";
  }
}

// Every valid kernel of target t, timed. A kernel that cannot run is reported, not timed.
// `pdl`: matvecs are launched with programmatic dependent launch, as a plan with PDL on a
// compute capability 9.0+ GPU launches them (the cuBLAS GEMM never is).
std::vector<CalibratedKernel> time_target(const TuneTarget& t, cudaStream_t s, bool quick, bool pdl) {
  const int64_t rb = row_bytes(t.type, t.cols);
  const int64_t tensor_bytes = t.rows * rb;
  const int64_t copies = std::clamp<int64_t>((512ll << 20) / std::max<int64_t>(tensor_bytes, 1) + 1, 2, 64);
  const size_t stride = size_t((tensor_bytes + 255) / 256 * 256);
  const int64_t tensors = copies * (t.paired ? 2 : 1);
  Buf w(stride * size_t(tensors));
  for (int64_t k = 0; k < tensors; ++k)
    cuda::fill_random(t.type, static_cast<uint8_t*>(w.p) + size_t(k) * stride, t.rows * t.cols, {uint64_t(k + 1)}, s);
  const int64_t n = t.tokens, slots = n * t.groups;
  Buf x(size_t(n * t.cols * t.groups) * 4), y(size_t(n * t.rows) * 4), y2(size_t(n * t.rows) * 4);
  cuda::fill_random(DType::F32, x.p, n * t.cols * t.groups, {99, 1.0f}, s);

  cuda::LinearWorkspace ws;
  ws.qact_bytes = cuda::linear_qact_bytes(t.type, t.cols, slots);
  Buf qact(size_t(std::max<int64_t>(ws.qact_bytes, 1)));
  ws.qact = qact.p;
  std::vector<int32_t> iota(static_cast<size_t>(slots));
  for (int64_t i = 0; i < slots; ++i) iota[size_t(i)] = int32_t(i % t.groups);
  Buf diota(iota.size() * 4);
  ck(cudaMemcpy(diota.p, iota.data(), iota.size() * 4, cudaMemcpyHostToDevice), "group table");
  ws.iota = static_cast<const int32_t*>(diota.p);
  ws.iota_n = slots;
  ws.iota_groups = t.groups;
  cuda::CublasGemm gemm(s);
  ws.gemm = &gemm;
  ws.gemm_ws_bytes = cuda::linear_gemm_bytes(t.cols, n, ws.gemm_tile_rows);
  Buf gws(size_t(std::max<int64_t>(ws.gemm_ws_bytes, 1)));
  ws.gemm_ws = gws.p;
  ck(cudaStreamSynchronize(s), "tune set-up");

  auto weight = [&](int64_t k) {
    ref::Weight m;
    m.type = t.type;
    m.data = static_cast<const uint8_t*>(w.p) + size_t(k) * stride;
    m.rows = t.rows;
    m.cols = t.cols;
    m.name = "tune weight";
    return m;
  };
  const int launches = n == 1 ? (quick ? 20 : 100) : (quick ? 3 : 10);
  std::vector<CalibratedKernel> out;
  for (const std::string& id : t.kernels) {
    cuda::LinearPath path{};
    if (const std::string why = path_of(id, t, path); !why.empty()) {
      std::fprintf(stderr, "  %-40s not timed: %s\n", id.c_str(), why.c_str());
      continue;
    }
    const bool overlap = pdl && path != cuda::LinearPath::gemm;
    const float* xp = static_cast<const float*>(x.p);
    float* yp = static_cast<float*>(y.p);
    double us = 0;
    try {  // a launcher refusing the call does so at the first, uncaptured call
      us = time_calls(s, launches, quick ? 3 : 5, [&](int i) {
        const int64_t c = i % copies;
        if (t.op == OpKind::grouped_matmul) cuda::grouped_linear(weight(c), t.groups, xp, n, yp, ws, s, path, overlap);
        else if (t.paired)
          cuda::linear_pair(weight(c), weight(copies + c), xp, n, yp, static_cast<float*>(y2.p), ws, s, path, overlap);
        else cuda::linear(weight(c), xp, n, yp, ws, s, path, overlap);
      });
    } catch (const Error& e) {
      std::fprintf(stderr, "  %-40s not timed: %s\n", id.c_str(), e.what());
      continue;
    }
    std::fprintf(stderr, "  %-40s %10.2f us\n", id.c_str(), us);
    out.push_back({id, t.shape, us, 0});
  }
  return out;
}

}  // namespace
}  // namespace fp::cli::tune

FP_COMMAND("tune", "Time every candidate kernel of a plan's product choices on this GPU (measured.kernels)",
           [](CLI::App& app) {
  struct Opts {
    std::string plan, out;
    bool quick = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("--plan", o->plan, "The plan whose choices to time (flashplan compile for this GPU's profile)")
      ->required();
  app.add_option("-o,--output", o->out, "Write the measured.kernels fragment here (default: standard output)");
  app.add_flag("--quick", o->quick, "Fewer launches and repetitions");
  return [o]() -> int {
    using namespace fp;
    const LoadedPlan lp = load_plan(o->plan);
    const std::vector<TuneTarget> targets = tune_targets(*lp, o->plan);  // before any CUDA call
    int dev = 0;
    cli::cuda_bench::ck(cudaGetDevice(&dev), "device");
    cudaDeviceProp prop{};
    cli::cuda_bench::ck(cudaGetDeviceProperties(&prop, dev), "device properties");
    cudaStream_t s = nullptr;
    cli::cuda_bench::ck(cudaStreamCreate(&s), "stream");
    cuda::quant_cuda_init();
    const bool pdl = lp->provenance()->options()->pdl() && prop.major >= 9;
    std::fprintf(stderr, "tune: %zu product shapes with a choice in %s, on %s\n", targets.size(), o->plan.c_str(),
                 prop.name);
    std::vector<CalibratedKernel> all;
    for (const TuneTarget& t : targets) {
      std::fprintf(stderr, "%s (%u nodes)\n", t.shape.c_str(), t.nodes);
      const auto got = cli::tune::time_target(t, s, o->quick, pdl);
      all.insert(all.end(), got.begin(), got.end());
    }
    cudaStreamDestroy(s);
    const std::string yaml = measured_kernels_yaml(
        all, {str("flashplan tune (", build_commit(), "), ", prop.name, ", ", bench::utc_now(), ", plan ", o->plan),
              str(all.size(), " timings of ", targets.size(), " product shapes: every valid kernel, graphs of back-to-back ",
                  "calls over weight copies spanning >= 512 MiB, matvecs ", pdl ? "with" : "without",
                  " programmatic dependent launch")});
    if (o->out.empty()) {
      std::fputs(yaml.c_str(), stdout);
    } else {
      std::ofstream f(o->out, std::ios::binary | std::ios::trunc);
      if (!f || !(f << yaml) || !f.flush()) fail(o->out, ": cannot write -o");
      std::printf("wrote %s: %zu timings\n", o->out.c_str(), all.size());
    }
    return 0;
  };
});
