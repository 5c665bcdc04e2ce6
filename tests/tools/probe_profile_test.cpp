// The profile `flashplan probe` writes, checked without a GPU: probe-like facts (an
// H100 SXM as its driver reports it, and a GPU no shipped profile knows) go through the
// same writer the command uses, and the YAML must load with the planner's strict
// loader, keep every probed and measured number, take datasheet figures from the
// matching shipped profile, and mark stand-ins for unknown GPUs.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "ops/core/error.h"
#include "planner/profile/device_profile.h"
#include "planner/profile/probed_profile.h"

namespace {

const std::string kDevices = FLASHPLAN_SOURCE_DIR "/plans/devices";

// What the probe read and measured on an H100 SXM5 80GB in this project (the [dp]
// figures of plans/devices/h100-sxm-80gb.yaml), with plausible measured rates.
fp::ProbedGpu h100() {
  fp::ProbedGpu g;
  g.name = "NVIDIA H100 80GB HBM3";
  g.cc_major = 9;
  g.cc_minor = 0;
  g.sm_count = 132;
  g.total_bytes = 85017493504ull;
  g.free_bytes = 84465090560ull;
  g.l2_bytes = 52428800;
  g.smem_per_sm_bytes = 233472;
  g.sm_clock_mhz = 1980;
  g.memory_clock_mhz = 2619;
  g.bus_width_bits = 5120;
  g.vmm_granularity = 2097152;
  g.host_gpus = 1;
  g.host_memory_bytes = 137438953472ull;
  g.driver_version = "13.0";
  g.runtime_version = "13.0";
  g.copy_gbps = 2983.4;
  g.read_gbps = 3120.2;
  g.h2d_gbps = 55.3;
  g.fp32_tflops = 51.2;
  g.fp16_tflops = 712.5;
  g.bf16_tflops = 705.1;
  g.int8_tops = 1203.9;
  g.gemm_shape = "8192x8192x8192";
  return g;
}

fp::DeviceProfile shipped(const std::string& name) {
  return fp::load_device_profile(kDevices + "/" + name + ".yaml");
}

}  // namespace

TEST_CASE("probe profile: an H100 SXM takes its datasheet figures from the shipped profile") {
  const auto all = fp::load_profiles_in(kDevices);
  REQUIRE(all.size() >= 2);
  const fp::ProbedGpu g = h100();
  const fp::ProbedProfile out = fp::render_probed_profile(g, all, "2026-01-01T00:00:00Z, test");
  CHECK(out.matched == "h100-sxm-80gb");
  CHECK(out.edits.empty());
  CAPTURE(out.yaml);
  const fp::DeviceProfile p = fp::parse_device_profile(out.yaml, "probed.yaml");
  const fp::DeviceProfile s = shipped("h100-sxm-80gb");
  CHECK(p.name == "h100-sxm-80gb");
  CHECK(p.backend == fp::Backend::Cuda);
  // probed
  CHECK(p.memory_bytes == g.total_bytes);
  CHECK(p.usable_bytes == g.free_bytes);
  CHECK(p.l2_bytes == g.l2_bytes);
  CHECK(p.cc() == 90);
  CHECK(p.sm_count == 132);
  CHECK(p.smem_per_sm_bytes == g.smem_per_sm_bytes);
  CHECK(p.sm_clock_mhz == 1980);
  CHECK(p.memory_clock_mhz == 2619);
  CHECK(p.vmm_granularity == 2097152);
  CHECK(p.host_memory_bytes == g.host_memory_bytes);
  // datasheet, from the shipped profile
  CHECK(p.bandwidth_gbps == s.bandwidth_gbps);
  CHECK(p.fp32_tflops == doctest::Approx(s.fp32_tflops).epsilon(1e-3));
  CHECK(p.fp16_tflops == doctest::Approx(s.fp16_tflops).epsilon(1e-3));
  CHECK(p.fp8_tflops == doctest::Approx(s.fp8_tflops).epsilon(1e-3));
  CHECK(p.int8_tops == doctest::Approx(s.int8_tops).epsilon(1e-3));
  CHECK(p.pcie_gbps == s.pcie_gbps);
  CHECK(p.nvlink_gbps == s.nvlink_gbps);
  // measured, as written (rounded to the digits the writer keeps)
  CHECK(p.measured_bandwidth_gbps == doctest::Approx(2983).epsilon(1e-6));
  CHECK(p.measured_pcie_gbps == doctest::Approx(55.3).epsilon(1e-6));
  CHECK(p.measured_fp32_tflops == doctest::Approx(51.2).epsilon(1e-6));
  CHECK(p.measured_fp16_tflops == doctest::Approx(712.5).epsilon(1e-6));
  CHECK(p.measured_bf16_tflops == doctest::Approx(705.1).epsilon(1e-6));
  CHECK(p.measured_int8_tops == doctest::Approx(1203.9).epsilon(1e-6));
  CHECK(p.measured_fp8_tflops == 0);
  // the cost model sees the measured rates where there are any, the datasheet elsewhere
  const fp::DeviceRates r = p.rates();
  CHECK(r.fp16 == doctest::Approx(712.5e12));
  CHECK(r.int8 == doctest::Approx(1203.9e12));
  CHECK(r.fp8 == doctest::Approx(s.fp8_tflops * 1e12));
  CHECK(r.bandwidth == doctest::Approx(2983e9));
  // every value line names its source
  CHECK(out.yaml.find("[ship] h100-sxm-80gb") != std::string::npos);
  CHECK(out.yaml.find("[probe]") != std::string::npos);
  CHECK(out.yaml.find("[meas]") != std::string::npos);
}

TEST_CASE("probe profile: an H100 PCIe (114 SMs) or an H200 is not taken for the H100 SXM") {
  const auto all = fp::load_profiles_in(kDevices);
  fp::ProbedGpu pcie = h100();
  pcie.name = "NVIDIA H100 PCIe";
  pcie.sm_count = 114;
  CHECK(fp::match_profile(pcie, all) == nullptr);
  fp::ProbedGpu h200 = h100();
  h200.name = "NVIDIA H200";
  h200.total_bytes = 150754820096ull;
  const fp::DeviceProfile* m = fp::match_profile(h200, all);
  REQUIRE(m != nullptr);
  CHECK(m->name == "h200-141gb");
}

TEST_CASE("probe profile: an unknown GPU loads, computes what it can and marks stand-ins") {
  fp::ProbedGpu g;
  g.name = "NVIDIA Example GPU 24GB";
  g.cc_major = 8;
  g.cc_minor = 6;
  g.sm_count = 84;
  g.total_bytes = 25769803776ull;
  g.free_bytes = 25300000000ull;
  g.l2_bytes = 6291456;
  g.smem_per_sm_bytes = 102400;
  g.sm_clock_mhz = 1860;
  g.memory_clock_mhz = 9751;
  g.bus_width_bits = 384;
  g.vmm_granularity = 2097152;
  g.host_gpus = 2;
  g.copy_gbps = 800;
  g.h2d_gbps = 24.5;
  g.fp32_tflops = 30.1;
  g.fp16_tflops = 70.2;
  g.bf16_tflops = 69.8;
  g.int8_tops = 250.4;
  g.gemm_shape = "4096x4096x4096";
  const fp::ProbedProfile out = fp::render_probed_profile(g, fp::load_profiles_in(kDevices), "test");
  CAPTURE(out.yaml);
  CHECK(out.matched.empty());
  const fp::DeviceProfile p = fp::parse_device_profile(out.yaml, "probed.yaml");
  CHECK(p.name == "nvidia-example-gpu-24gb");
  // bandwidth = 2 x 9751 MHz x 384 bits / 8
  CHECK(p.bandwidth_gbps == doctest::Approx(std::round(2 * 9751e6 * 48 / 1e9)));
  // FP32 = 84 SMs x 128 lanes (cc 8.6) x 2 x 1860 MHz
  CHECK(p.fp32_tflops == doctest::Approx(84 * 128 * 2 * 1.86e9 / 1e12).epsilon(1e-3));
  CHECK(p.fp8_tflops == 0);  // no FP8 tensor cores on cc 8.6
  CHECK(p.fp16_tflops == doctest::Approx(70.2));
  CHECK(p.int8_tops == doctest::Approx(250.4));
  CHECK(p.host_gpus == 2);
  CHECK(p.host_link_gbps > 0);
  // the fields a person must replace are listed and marked in the file
  std::string listed;
  for (const auto& e : out.edits) listed += e + "\n";
  CAPTURE(listed);
  for (const char* f : {"gpu.tensor_tflops.fp16", "gpu.tensor_tflops.bf16", "gpu.tensor_tflops.int8", "links.pcie_gbps",
                        "links.nvlink_gbps", "host.gpu_link_gbps"})
    CHECK(listed.find(f) != std::string::npos);
  CHECK(listed.find("fp32") == std::string::npos);
  CHECK(listed.find("bandwidth") == std::string::npos);
  size_t marks = 0;
  for (size_t at = out.yaml.find("# [EDIT] "); at != std::string::npos; at = out.yaml.find("# [EDIT] ", at + 1))
    ++marks;
  CHECK(marks == out.edits.size());
}

TEST_CASE("probe profile: a GPU that reports nothing is refused") {
  fp::ProbedGpu g;
  g.name = "broken";
  CHECK_THROWS_WITH_AS(fp::render_probed_profile(g, {}, "test"), doctest::Contains("expected a CUDA device"), fp::Error);
}

TEST_CASE("probe profile: profile names from GPU names") {
  CHECK(fp::profile_name_for("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3");
  CHECK(fp::profile_name_for("  NVIDIA GeForce RTX 4090  ") == "nvidia-geforce-rtx-4090");
  CHECK(fp::profile_name_for("***") == "gpu");
  CHECK(fp::profile_name_for(std::string(100, 'a')).size() == 64);
}
