// A model's weights on the GPU: the thin C++ API the CUDA executor uses. load_weights()
// maps every placed tensor (its own VMM mapping on a device, or mapped pinned host memory)
// and fills it, either from the GGUF file or, with random_seed, with valid random blocks
// generated on the device (`--weights random:SEED`: no weight file is read, so a header-only
// GGUF is enough). Mappings are released in reverse order when DeviceWeights dies.
//
// Reading: tensors are cut into chunks, several reader threads read chunks (O_DIRECT when
// the filesystem allows it, else buffered) into pinned staging buffers, and each buffer's
// copy to the device runs on its own stream while the next reads go on.
// CUDA-free header.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ops/quant/types.h"
#include "planner/gguf/gguf.h"
#include "runtime/plan/plan_devices.h"

namespace fp::cuda {

enum class Placement { device, host };

// Where one tensor goes. Until the plan carries placements (planner/plan_io), the caller
// lists them; tensors not listed are not loaded.
struct WeightPlacement {
  std::string tensor;
  Placement where = Placement::device;
  int device = 0;
  // Part of the tensor (a multi-GPU plan's outer slice: its device's routed experts):
  // bytes [offset, offset + bytes) of the GGUF tensor, outer_count entries of its
  // outermost dimension (the DeviceTensor's shape). bytes 0: the whole tensor. Under
  // random_seed a part gets exactly that part of the whole tensor's random contents.
  uint64_t offset = 0, bytes = 0;
  int64_t outer_count = 0;
  // A plan's packed chunk (device_packed: small tensors share one mapping instead of
  // each taking a whole granule): the chunk's id, its rounded size, and this tensor's
  // offset in it. pack < 0: the tensor gets its own mapping.
  int64_t pack = -1;
  uint64_t pack_bytes = 0, pack_offset = 0;
};
// Every tensor of the file on `device`.
std::vector<WeightPlacement> all_on_device(const gguf::File& f, int device = 0);
// What one device of a compiled plan loads (runtime/plan/plan_devices.h), on CUDA device
// `device`: host placement, outer slices and packed chunks as the plan says.
std::vector<WeightPlacement> weight_placements(const PlanDevice& part, int device);

struct DeviceTensor {
  std::string name;
  DType type = DType::F32;
  std::array<int64_t, 4> ne{1, 1, 1, 1};
  uint64_t bytes = 0;
  void* ptr = nullptr;  // device-accessible: the VMM mapping, or the host memory's device alias
  Placement where = Placement::device;
  int device = 0;
};

struct LoadProgress {
  uint64_t done_bytes = 0, total_bytes = 0;
  double seconds = 0;
  bool finished = false;
};
using ProgressFn = std::function<void(const LoadProgress&)>;
// A one-line progress bar on stderr: "weights [#####     ] 40.1/80.7 GiB  9.8 GiB/s".
ProgressFn stderr_progress_bar();

struct LoadOptions {
  int readers = 0;                     // reader threads (0: one per core, at most 16)
  int64_t chunk_bytes = 32ll << 20;    // bytes per read (and per staging buffer)
  int staging_buffers = 0;             // pinned buffers (0: readers + 4)
  bool direct_io = true;               // try O_DIRECT first
  std::optional<uint64_t> random_seed;  // fill with random valid blocks instead of reading
  ProgressFn progress;                 // called about 10 times a second, and once at the end
};

struct LoadStats {
  uint64_t bytes = 0;       // tensor bytes filled
  double seconds = 0;
  bool direct_io = false;   // every read used O_DIRECT
  int readers = 0;
  double gib_per_s() const { return seconds > 0 ? double(bytes) / double(1ull << 30) / seconds : 0; }
};

class DeviceWeights {
 public:
  DeviceWeights();
  DeviceWeights(DeviceWeights&&) noexcept;
  DeviceWeights& operator=(DeviceWeights&&) noexcept;
  ~DeviceWeights();

  const std::vector<DeviceTensor>& tensors() const;
  const DeviceTensor* find(std::string_view name) const;
  const DeviceTensor& at(std::string_view name) const;  // throws naming the tensor
  uint64_t device_bytes() const;  // mapped on devices (rounded to the granularity)
  uint64_t host_bytes() const;
  const LoadStats& stats() const;

  struct Impl;

 private:
  friend DeviceWeights load_weights(const gguf::File&, const std::vector<WeightPlacement>&, const LoadOptions&);
  std::unique_ptr<Impl> impl_;
};

DeviceWeights load_weights(const gguf::File& file, const std::vector<WeightPlacement>& placements,
                           const LoadOptions& opts = {});

// The random contents a tensor gets under random_seed: its own seed (from the run's seed
// and the tensor's name), norms near 1, other floats and blocks within about +-0.05.
struct RandomTensorFill {
  uint64_t seed = 0;
  float scale = 0.05f, center = 0.0f;
  int64_t int_range = 0;
};
RandomTensorFill random_fill_for(const gguf::TensorInfo& t, uint64_t seed);

}  // namespace fp::cuda
