// Registry entries of the collectives of multi-GPU plans (issue 8): NCCL all-reduce and
// all-gather over the GPU links of one host. The planner places and prices both. The CUDA
// executor runs the all-reduce (runtime/cuda/MULTI_GPU.md; ncclAllReduce inside the
// step's graph); the all-gather only follows a vocabulary-split head, which it does not
// run (tensor_split nodes are refused at load), so that entry stays implemented = false.
//
// Cost, the usual alpha-beta model of a ring collective over N devices, with B the bytes
// of the buffer each device ends up with and beta the per-direction link bandwidth of
// one GPU (profile host.gpu_link_gbps):
//   all_reduce:  t = alpha + 2 (N-1)/N * B / beta   (reduce-scatter, then all-gather)
//   all_gather:  t = alpha + (N-1)/N * B / beta     (each device receives the N-1 slices it lacks)
// The 2(N-1)/N and (N-1)/N factors are the "bus bandwidth" factors of nccl-tests
// (github.com/NVIDIA/nccl-tests, doc/PERFORMANCE.md). alpha is the profile's
// host.collective_latency_us: the fixed cost of one small collective inside a CUDA graph,
// which dominates at decode sizes (a 16 KiB all-reduce moves in well under a microsecond
// at 450 GB/s).
#include "ops/registry/entries.h"

namespace fp {

namespace {

KernelInfo collective(std::string id, OpKind op, std::string summary, bool reduce, bool implemented) {
  KernelInfo k;
  k.id = std::move(id);
  k.op = op;
  k.backend = Backend::Cuda;
  k.min_cc = 70;
  k.implemented = implemented;
  k.summary = std::move(summary);
  k.cost = [reduce](const KernelShape& s, const DeviceRates& r) {
    const double n = std::max<uint32_t>(r.devices, 1);
    const double factor = (reduce ? 2.0 : 1.0) * (n - 1) / n;
    const double wire_us = r.gpu_link > 0 ? factor * s.link_bytes / r.gpu_link * 1e6 : 0;
    return KernelCost{r.collective_latency_us + wire_us, 0, {}};
  };
  return k;
}

}  // namespace

void register_collective_kernels(std::vector<KernelInfo>& out) {
  out.push_back(collective("cuda.nccl.all_reduce", OpKind::all_reduce,
                           "NCCL all-reduce (sum, in place) over the plan's GPUs, captured in the step's graph", true, true));
  out.push_back(collective("cuda.nccl.all_gather", OpKind::all_gather,
                           "NCCL all-gather over the plan's GPUs; planned, not yet run by any executor", false, false));
}

}  // namespace fp
