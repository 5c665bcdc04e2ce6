// `flashplan compile`: GGUF header + device profile -> plan. Builds the op graph per
// phase, places the weights, picks a kernel per node, segments the phases into CUDA
// graphs and checks the memory budget; the result is the FlatBuffers plan of
// schemas/plan.fbs. Deterministic: the same model, profile and options give the same
// bytes (no timestamps, no host names, no commit hash).
//
// Memory policy when weights + KV cache at max context + activations + workspace +
// graph reserve exceed the usable device memory: with --fit-context, the max context is
// lowered to the largest that fits; otherwise (default) the routed experts of the last
// layers move to pinned host memory, one layer at a time, until it fits. If neither can
// make it fit, compile fails with the shortfall in GiB and the largest context that fits.
//
// Multi-GPU (a cuda profile with host.gpus = N > 1, issue 8): the model is spread over
// all N GPUs for batch-1 latency. Routed experts are split by experts (device g holds
// experts [g*E/N, (g+1)*E/N) of every layer); attention, shared expert and output head
// are each either replicated on every GPU or split (tensor parallel), whichever
// combination the cost model predicts fastest for a decode step among those that fit
// every device (see "Parallelism" in compile.cpp). Collectives are nodes of the phases.
// Host offload is not used with several GPUs; --fit-context works as on one GPU.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ops/numerics/mode.h"
#include "planner/model/model.h"
#include "planner/profile/device_profile.h"
#include "planner/select/select.h"
#include "planner/plan_io/plan_io.h"

namespace fp {

inline constexpr uint64_t kDefaultMaxContext = 262144;   // capped by the model's context length
inline constexpr uint64_t kDefaultCostContext = 8192;    // capped by the max context
inline constexpr uint64_t kGraphReserveBytes = 256ull << 20;  // CUDA graphs, module images, cuBLAS handles
// Per device of a multi-GPU plan: NCCL's communicator buffers. An estimate: NCCL_BUFFSIZE
// defaults to 4 MiB per channel and peer (NCCL environment-variable documentation), and a
// communicator over NVLink opens several channels per peer; 256 MiB covers 8 GPUs.
inline constexpr uint64_t kCollectiveReserveBytes = 256ull << 20;

struct CompileOptions {
  uint64_t max_context = 0;      // 0: min(model context length, kDefaultMaxContext)
  Numerics numerics = Numerics::official;
  // KV storage, F32 or F16. F16 only in official numerics, whose stored rows are
  // F16-rounded already (so it holds the same values in half the bytes); unset: F16 in
  // official numerics, F32 in plain.
  std::optional<DType> kv_dtype;
  std::vector<uint32_t> prefill_buckets = {16, 128, 512, 2048};
  uint32_t mtp_depth = 1;
  bool allow_offload = true;
  bool fit_context = false;
  // Multi-GPU: keep attention, the shared expert and the head replicated, so greedy output
  // is bit-identical to one GPU's (a split part's partial sums are added in NCCL's order);
  // the routed experts stay split (their exchange is exact). The split options are listed
  // in the plan's parallelism table as excluded, with this reason. The default: the CUDA
  // executor runs only such plans (runtime/cuda/MULTI_GPU.md); false (--inexact-parallel)
  // lets the cost model weigh the splits too.
  bool exact_parallel = true;
  // Programmatic dependent launch: every node whose kernel can start while the previous
  // kernel finishes on this device (KernelInfo::overlap_min_cc; today every CUDA kernel
  // but the cuBLAS GEMM, the collectives and kernels registered ahead of their launcher,
  // on compute capability 9.0+) is marked overlap_prev. Off (--no-pdl): every kernel starts after the previous ends.
  // Numerics do not change either way: the kernel reads its inputs after the wait.
  bool pdl = true;
  uint64_t cost_context = 0;     // 0: min(max context, kDefaultCostContext)
  std::vector<KernelOverride> overrides;
  std::string model_file;        // recorded without directories
  std::string mtp_file;
};

std::unique_ptr<plan::PlanT> compile_plan(const Model& model, const DeviceProfile& profile, const CompileOptions& o);


}  // namespace fp
