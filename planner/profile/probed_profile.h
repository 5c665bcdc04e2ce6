// A device profile written from what `flashplan probe` read and measured on a GPU.
// CUDA-free: the probe (tools/cmd_probe_cuda.cpp) fills ProbedGpu, this file turns it
// into profile YAML in the schema device_profile.cpp reads, so the same text can be
// checked on any machine.
//
// What a GPU cannot tell about itself (datasheet tensor rates, PCIe and NVLink link
// rates) comes from a shipped profile of the same GPU when one matches (same compute
// capability and SM count, total memory within 3%); otherwise the field gets a
// measured or computed stand-in and an `[EDIT]` comment, listed in `edits`, so the file
// still loads but says which numbers a person should replace.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "planner/profile/device_profile.h"

namespace fp {

struct ProbedGpu {
  std::string name;  // as the driver reports it, e.g. "NVIDIA H100 80GB HBM3"
  uint32_t cc_major = 0, cc_minor = 0;
  uint32_t sm_count = 0;
  uint64_t total_bytes = 0;
  uint64_t free_bytes = 0;  // right after context creation
  uint64_t l2_bytes = 0;
  uint64_t smem_per_sm_bytes = 0;
  uint32_t sm_clock_mhz = 0, memory_clock_mhz = 0;
  uint32_t bus_width_bits = 0;
  uint64_t vmm_granularity = 0;
  uint32_t host_gpus = 1;
  uint64_t host_memory_bytes = 0;  // 0 = unknown
  std::string driver_version, runtime_version;
  // measured on the GPU (0 = not measured)
  double copy_gbps = 0;   // device-to-device copy, read + write counted
  double read_gbps = 0;   // streaming read kernel
  double h2d_gbps = 0;    // pinned host-to-device copy
  double fp32_tflops = 0, fp16_tflops = 0, bf16_tflops = 0, int8_tops = 0;  // cuBLAS GEMMs
  std::string gemm_shape;  // e.g. "8192x8192x8192"
};

struct ProbedProfile {
  std::string yaml;
  std::string matched;             // name of the shipped profile used, or empty
  std::vector<std::string> edits;  // fields holding stand-ins a person should replace
};

// Every *.yaml profile in `dir` (sorted by file name); none when `dir` does not exist.
// A shipped profile that does not load is an error.
std::vector<DeviceProfile> load_profiles_in(const std::string& dir);

// The CUDA profile of `shipped` describing the same GPU as `g`, or nullptr.
const DeviceProfile* match_profile(const ProbedGpu& g, const std::vector<DeviceProfile>& shipped);

// Profile YAML for `g`. `stamp` goes into the header comment (date, flashplan commit).
ProbedProfile render_probed_profile(const ProbedGpu& g, const std::vector<DeviceProfile>& shipped,
                                    const std::string& stamp);

// A profile name from a GPU name: "NVIDIA H100 80GB HBM3" -> "nvidia-h100-80gb-hbm3".
std::string profile_name_for(const std::string& gpu_name);

}  // namespace fp
