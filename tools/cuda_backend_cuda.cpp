// The CUDA backend for the commands (see cuda_backend.h): opening a CUDA engine from the
// shared engine flags, and the `--check-against cpu` parity report.
#include <cmath>
#include <cstdio>

#include "ops/core/error.h"
#include "runtime/cpu/engine.h"
#include "runtime/cuda/engine.h"
#include "runtime/cuda/multi_device.h"
#include "tools/cuda_backend.h"

namespace fp::cli {
namespace {

cuda::CudaOptions options(const CudaEngineArgs& a) {
  cuda::CudaOptions o;
  o.numerics = a.numerics;
  o.max_context = a.ctx;
  o.max_step = a.chunk;
  o.graphs = a.graphs;
  o.host_sampling = a.host_sampling;
  o.plan = a.plan;
  o.random_seed = a.random_seed;
  o.progress = a.progress;
  return o;
}

struct NodeDiff {
  double rel = 0, max_abs = 0;
  bool finite = true;
};

NodeDiff compare(const std::vector<float>& got, const std::vector<float>& ref) {
  NodeDiff d;
  if (got.size() != ref.size()) return {INFINITY, INFINITY, false};
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i]) || !std::isfinite(ref[i])) d.finite = false;
    const double e = double(got[i]) - double(ref[i]);
    num += e * e;
    den += double(ref[i]) * double(ref[i]);
    d.max_abs = std::max(d.max_abs, std::fabs(e));
  }
  d.rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  if (!d.finite) d.rel = d.max_abs = INFINITY;
  return d;
}

}  // namespace

std::unique_ptr<Engine> open_cuda_engine(const CudaEngineArgs& a) {
  ModelOpenOptions mo;
  mo.mtp_path = a.mtp_file;
  // A plan for several GPUs runs in the multi-device engine (runtime/cuda/multi_device.h).
  std::unique_ptr<Engine> e;
  if (a.plan && (*a.plan)->device()->gpus() > 1)
    e = cuda::MultiDeviceEngine::open(a.model, options(a), mo);
  else
    e = cuda::CudaEngine::open(a.model, options(a), mo);
  const LoadInfo l = e->load_info();
  std::fprintf(stderr, "cuda: weights %.2f GiB loaded in %.2f s (%.2f GiB/s) from %s%s\n",
               double(l.bytes) / double(1ull << 30), l.seconds, l.gib_per_s(), l.source.c_str(),
               l.source == "file" ? (l.direct_io ? ", direct I/O" : ", buffered") : "");
  return e;
}

bool check_cuda_against_cpu(const CudaEngineArgs& a, std::span<const int32_t> ids) {
  cuda::CudaOptions go = options(a);
  go.max_step = std::max<int64_t>(1, int64_t(ids.size()));  // one step: every row traced
  go.max_context = std::max<int64_t>(go.max_context, int64_t(ids.size()));
  cpu::CpuOptions co;
  co.numerics = a.numerics;
  co.max_context = go.max_context;
  co.max_step = go.max_step;
  auto ge = cuda::CudaEngine::open(a.model, go);
  auto ce = cpu::CpuEngine::open(a.model, co);
  auto gs = ge->new_session();
  auto cs = ce->new_session();
  auto& gx = dynamic_cast<cuda::CudaSession&>(*gs).executor();
  auto& cx = dynamic_cast<cpu::CpuSession&>(*cs).executor();
  gx.trace.enabled = true;
  cx.stream_trace.enabled = true;
  const auto gl = gs->append_all(ids);
  const std::vector<float> glv(gl.begin(), gl.end());
  const auto cl = cs->append_all(ids);
  const std::vector<float> clv(cl.begin(), cl.end());

  // Bounds: f32 summation order only (plain); official numerics may move a value by
  // one FP8/FP4 code step where a 1-ulp difference meets a rounding boundary.
  const bool plain = a.numerics == Numerics::plain;
  const double stream_rel = plain ? 1e-5 : 1e-2, logit_abs = plain ? 1e-4 : 5e-2;
  std::printf("%-14s %14s %14s  %s\n", "node", "rel L2", "max abs", "bound");
  const char* first_bad = nullptr;
  std::string first_name;
  auto row = [&](const std::string& name, const NodeDiff& d, bool ok, const char* bound) {
    std::printf("%-14s %14.3e %14.3e  %s%s\n", name.c_str(), d.rel, d.max_abs, bound, ok ? "" : "  EXCEEDED");
    if (!ok && !first_bad) {
      first_bad = "x";
      first_name = name;
    }
  };
  const size_t L = std::min(gx.trace.after_layer.size(), cx.stream_trace.after_layer.size());
  char bound[64];
  std::snprintf(bound, sizeof bound, "rel <= %.0e", stream_rel);
  for (size_t l = 0; l < L; ++l) {
    const NodeDiff d = compare(gx.trace.after_layer[l], cx.stream_trace.after_layer[l]);
    row(l == 0 ? std::string("embed") : "layer " + std::to_string(l - 1), d, d.finite && d.rel <= stream_rel, bound);
  }
  const NodeDiff dh = compare(gx.trace.final_hidden, cx.stream_trace.final_hidden);
  row("final_hidden", dh, dh.finite && dh.rel <= stream_rel, bound);
  std::snprintf(bound, sizeof bound, "max abs <= %.0e", logit_abs);
  const NodeDiff dl = compare(glv, clv);
  row("logits", dl, dl.finite && dl.max_abs <= logit_abs, bound);
  if (first_bad) {
    std::printf("first node beyond its bound: %s\n", first_name.c_str());
    return false;
  }
  std::printf("every node within its bound (%zu tokens, %s numerics)\n", ids.size(), numerics_name(a.numerics));
  return true;
}

}  // namespace fp::cli
