// weight_placements (see device_weights.h): a plan device's loads as the loader's
// placements. CUDA-free, so the CPU build tests it.
#include "runtime/cuda/device_weights.h"

namespace fp::cuda {

std::vector<WeightPlacement> weight_placements(const PlanDevice& part, int device) {
  std::vector<WeightPlacement> out;
  out.reserve(part.tensors.size());
  for (const DeviceTensorLoad& t : part.tensors) {
    WeightPlacement x;
    x.tensor = t.tensor;
    x.where = t.host ? Placement::host : Placement::device;
    x.device = device;
    if (t.outer_count > 0) {
      x.offset = t.offset;
      x.bytes = t.bytes;
      x.outer_count = t.outer_count;
    }
    x.pack = t.pack;
    x.pack_bytes = t.pack_bytes;
    x.pack_offset = t.pack_offset;
    out.push_back(std::move(x));
  }
  return out;
}

}  // namespace fp::cuda
