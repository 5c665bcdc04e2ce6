// this_gpu_profile (see this_gpu_profile.h).
#include "tests/gpu/this_gpu_profile.h"

#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <string>

#include "ops/core/error.h"

namespace fp::test {

ProbedGpu this_gpu() {
  cudaDeviceProp p{};
  REQUIRE(cudaGetDeviceProperties(&p, 0) == cudaSuccess);
  size_t free_b = 0, total_b = 0;
  REQUIRE(cudaMemGetInfo(&free_b, &total_b) == cudaSuccess);
  ProbedGpu g;
  g.name = p.name;
  g.cc_major = uint32_t(p.major);
  g.cc_minor = uint32_t(p.minor);
  g.sm_count = uint32_t(p.multiProcessorCount);
  g.total_bytes = p.totalGlobalMem;
  g.free_bytes = free_b;
  return g;
}

DeviceProfile profile_for_this_gpu(uint32_t gpus) {
  const ProbedGpu g = this_gpu();
  const std::string dir = std::string(FLASHPLAN_SOURCE_DIR) + "/plans/devices";
  DeviceProfile prof;
  if (const DeviceProfile* m = match_profile(g, load_profiles_in(dir))) {
    prof = *m;
    MESSAGE("plan compiled for the shipped profile ", prof.name, " (", g.name, ")");
  } else {
    prof = load_device_profile(dir + "/h200-141gb.yaml");
    prof.name = profile_name_for(g.name);
    prof.cc_major = g.cc_major;
    prof.cc_minor = g.cc_minor;
    prof.sm_count = g.sm_count;
    prof.memory_bytes = g.total_bytes;
    prof.usable_bytes = g.free_bytes - (g.free_bytes >> 5);
    MESSAGE("no shipped profile matches ", g.name, ": plan compiled for a probed-style profile ", prof.name);
  }
  if (gpus > 1) {
    prof.name += str("-x", gpus);
    prof.host_gpus = gpus;
    prof.host_link_gbps = 450;
    prof.collective_latency_us = 6;
  }
  return prof;
}

}  // namespace fp::test
