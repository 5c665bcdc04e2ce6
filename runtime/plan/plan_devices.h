// What each GPU of a compiled plan loads, and which routed experts it holds (issue 8,
// runtime/cuda/MULTI_GPU.md). CUDA-free, so the CPU build tests the same rules the CUDA
// engines apply.
//
// A one-GPU plan is one device holding every weight of the model file whole (in its
// placement: a VMM chunk, or pinned host memory). A multi-GPU plan lists, per weight, the
// slice each device holds (Weight.slices): a whole copy, or the outer slice [first,
// first + count) of the tensor's outermost dimension, one contiguous byte range of the
// GGUF tensor (the routed experts [g*E/N, (g+1)*E/N) of device g). Refused, naming the
// plan, weight and device: a column slice (only tensor-split products have them, which
// the CUDA executor does not run), a weight missing on a device, host placement, and
// routed-expert slices that do not give each device one expert range for every layer
// (the executor maps the router's expert ids into its range once per step).
// The separate MTP file's tensors are not loaded (no MTP on CUDA yet).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "planner/gguf/gguf.h"
#include "planner/plan_io/plan_io.h"

namespace fp {

struct DeviceTensorLoad {
  std::string tensor;
  bool host = false;                         // pinned mapped host memory (one-GPU plans only)
  uint64_t offset = 0, bytes = 0;            // the byte range of the GGUF tensor this device holds
  int64_t outer_first = 0, outer_count = 0;  // an outer slice; count 0: the whole tensor
  // In one of the plan's packed chunks (small tensors share a mapping): its id, rounded
  // bytes and this tensor's offset. pack < 0: its own mapping.
  int64_t pack = -1;
  uint64_t pack_bytes = 0, pack_offset = 0;
};

struct PlanDevice {
  std::vector<DeviceTensorLoad> tensors;       // in the plan's weight order
  int64_t expert_first = 0, expert_count = 0;  // routed experts held, the same range in every layer
};

// One entry per GPU of the plan (device index = position = NCCL rank).
std::vector<PlanDevice> plan_devices(const LoadedPlan& p, const gguf::File& model);

}  // namespace fp
