// Device profiles: what the planner knows about the machine a plan targets, read from
// YAML (schemas/device_profile.md documents every key). A profile is datasheet numbers
// plus optional measured figures that override them; the planner never asks a GPU.
//
// Loading is strict: an unknown key, a wrong type, a missing field or an impossible
// value is an fp::Error naming the file, the key, the value found and what was expected.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ops/registry/kernel_registry.h"

namespace fp {

// One measured kernel timing, filed under a kernel id and a node's shape key (`flashplan
// kernels --plan` lists a plan's); it replaces the cost model for every matching node.
struct MeasuredKernel {
  std::string kernel;  // kernel id
  std::string shape;   // shape key of the node (KernelShape::key())
  double us = 0;
};

struct DeviceProfile {
  std::string source;  // file it was read from (for messages)
  std::string name;
  std::string description;
  Backend backend = Backend::Cuda;

  // memory
  uint64_t memory_bytes = 0;
  uint64_t usable_bytes = 0;
  double bandwidth_gbps = 0;  // GB/s = 1e9 B/s
  uint64_t l2_bytes = 0;

  // gpu (cuda backend)
  uint32_t cc_major = 0, cc_minor = 0;
  uint32_t sm_count = 0;
  uint64_t smem_per_sm_bytes = 0;
  uint32_t sm_clock_mhz = 0, memory_clock_mhz = 0;
  double fp32_tflops = 0;
  double fp16_tflops = 0, bf16_tflops = 0, fp8_tflops = 0, int8_tops = 0;  // dense, FP32 acc.
  uint64_t vmm_granularity = 2u << 20;

  // links
  double pcie_gbps = 0;    // per direction
  double nvlink_gbps = 0;  // per direction, 0 = none

  // cpu backend
  uint32_t cpu_threads = 0;
  double cpu_fp32_gflops = 0;

  // host: a plan places the model on all `host_gpus` GPUs (one-GPU plans: device 0)
  uint32_t host_gpus = 1;
  uint64_t host_memory_bytes = 0;  // 0 = not stated (offload is then unbounded)
  double host_link_gbps = 0;       // GPU-to-GPU per direction per GPU
  double collective_latency_us = 0;  // fixed cost of one collective; required when host_gpus > 1

  // measured (0 = not measured)
  double measured_bandwidth_gbps = 0;
  double measured_pcie_gbps = 0;
  double measured_launch_us = 0;
  double measured_fp32_tflops = 0;  // cuBLAS GEMM rates `flashplan probe` reached
  double measured_fp16_tflops = 0, measured_bf16_tflops = 0, measured_fp8_tflops = 0, measured_int8_tops = 0;
  std::vector<MeasuredKernel> measured;

  uint32_t cc() const { return cc_major * 10 + cc_minor; }
  // Rates the kernel cost functions see, with measured figures applied.
  DeviceRates rates() const;
  // Measured time of `kernel` on a node of shape key `shape`, if the profile has one.
  std::optional<double> measured_us(std::string_view kernel, std::string_view shape) const;
};

DeviceProfile parse_device_profile(std::string_view yaml_text, const std::string& source);
DeviceProfile load_device_profile(const std::string& path);

}  // namespace fp
