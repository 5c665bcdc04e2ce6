// Weight placement: where every tensor of the model lives at run time.
//
// Large tensors get their own VMM chunk on the device (base aligned to max(2 MiB, the
// VMM granularity), size rounded up to the granularity): per-tensor aligned bases were
// worth ~2x prefill in the seed, packing everything into one region lost it. Tensors
// smaller than kOwnChunkMin share packed chunks (256-byte aligned slices) so that 500
// norm vectors do not cost 2 MiB each. Tensors the planner offloads live in pinned host
// memory mapped into the device (host_mapped), read over PCIe / C2C by the kernels.
#pragma once
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "planner/graph/op_graph.h"
#include "planner/model/model.h"
#include "planner/profile/device_profile.h"

namespace fp {

enum class Placement : uint8_t { device_chunk = 0, device_packed = 1, host_mapped = 2 };
const char* placement_name(Placement p);

inline constexpr uint64_t kOwnChunkMin = 1u << 20;      // smaller tensors are packed
inline constexpr uint64_t kPackedChunkMax = 64u << 20;  // bytes of small tensors per packed chunk
inline constexpr uint64_t kPackedAlign = 256;
inline constexpr uint64_t kChunkBaseAlign = 2u << 20;
inline constexpr uint64_t kHostPage = 4096;

// A tensor of the model (file 0) or of the separate MTP file (file 1), in file order.
struct ModelTensor {
  const gguf::TensorInfo* info = nullptr;
  uint8_t file = 0;
};
std::vector<ModelTensor> model_tensors(const Model& m);

struct Chunk {
  uint32_t id = 0;
  Placement placement = Placement::device_chunk;
  int32_t device = 0;
  uint64_t bytes = 0;      // rounded
  uint64_t alignment = 0;
};

// One device's part of a weight in a multi-GPU plan.
struct SliceSlot {
  int32_t device = 0;
  SliceAxis axis = SliceAxis::whole;
  uint64_t first = 0, count = 0;  // along axis
  uint64_t bytes = 0;
  Placement placement = Placement::device_chunk;
  uint32_t chunk = 0;
  uint64_t offset = 0;
};

struct WeightSlot {
  Placement placement = Placement::device_chunk;
  int32_t device = 0;      // -1: on several devices (slices)
  uint32_t chunk = 0;
  uint64_t offset = 0;
  std::string reason;      // why it is host-mapped
  std::vector<SliceSlot> slices;  // multi-GPU plans: one per device
};

struct WeightPlacement {
  std::vector<WeightSlot> slots;  // parallel to model_tensors()
  std::vector<Chunk> chunks;
  uint64_t device_bytes = 0;      // sum of device chunk bytes (over every device)
  uint64_t host_bytes = 0;        // sum of host chunk bytes
  uint32_t host_tensors = 0;
  std::vector<uint64_t> per_device;  // device chunk bytes of each device (one entry on one GPU)
};

// `host[i]` (parallel to tensors) says which tensors are offloaded; `reason[i]` why.
// `devices` > 1 (a multi-GPU cuda plan): every tensor is on every device, whole or as
// the slice `axis[i]` says (parallel to tensors; empty = whole everywhere); device g
// holds [g*X/N, (g+1)*X/N) of the axis' extent X. Offload is not available then.
WeightPlacement place_weights(const std::vector<ModelTensor>& tensors, const std::vector<std::string>& host_reason,
                              const DeviceProfile& p, uint32_t devices = 1, const std::vector<SliceAxis>& axis = {});

// Offload units in the order the planner gives them up: the routed experts (gate, up,
// down) of the last trunk layer first, then the layer before, ... Each entry is the
// tensor indices (into model_tensors()) of one layer's routed experts.
struct OffloadUnit {
  uint32_t layer = 0;
  std::vector<size_t> tensors;
  uint64_t bytes = 0;
};
std::vector<OffloadUnit> offload_units(const Model& m, const std::vector<ModelTensor>& tensors);

}  // namespace fp
