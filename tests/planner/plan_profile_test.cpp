// Device profiles: every shipped profile loads and is self-consistent; each class of
// bad input (unknown key, wrong type, missing field, impossible value, bad YAML) is an
// error naming the file, the key, the value and what was expected; measured figures
// override the datasheet in the rates the cost model sees.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "ops/core/error.h"
#include "plan_test_util.h"
#include "planner/profile/device_profile.h"

using namespace fp;
using fp::test::error_of;

namespace {

const char* kGood = R"(
name: test-gpu
backend: cuda
memory:
  bytes: 1000000000
  usable_bytes: 900000000
  bandwidth_gbps: 1000
gpu:
  compute_capability: "9.0"
  sm_count: 100
  smem_per_sm_bytes: 233472
  sm_clock_mhz: 1800
  fp32_tflops: 50
  tensor_tflops: {fp16: 500, bf16: 500, fp8: 1000, int8: 1000}
  vmm_granularity: 2097152
links:
  pcie_gbps: 64
)";

std::string with(std::string text, const std::string& from, const std::string& to) {
  const auto at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}

}  // namespace

TEST_CASE("profile: every shipped profile loads, with consistent numbers") {
  const std::vector<std::string> names = {"h100-sxm-80gb", "h200-141gb", "b200", "rtx-pro-6000-blackwell",
                                          "gb10", "a100-80gb", "l40s", "rtx-4090", "cpu", "2x-h100-sxm-80gb",
                                          "8x-h100-sxm-80gb", "2x-h200-141gb"};
  for (const auto& n : names) {
    CAPTURE(n);
    const DeviceProfile p = test::shipped_profile(n);
    CHECK(p.name == n);
    CHECK(p.usable_bytes <= p.memory_bytes);
    CHECK(p.bandwidth_gbps > 0);
    const DeviceRates r = p.rates();
    CHECK(r.bandwidth > 0);
    CHECK(r.fp32 > 0);
    if (p.backend == Backend::Cuda) {
      CHECK(p.cc() >= 80);
      CHECK(p.sm_count > 0);
      CHECK(r.host_link > 0);
      CHECK(r.fp16 > r.fp32 * 0.9);  // tensor cores never slower than CUDA cores
      CHECK((p.vmm_granularity & (p.vmm_granularity - 1)) == 0);
    }
  }
  // Every file in plans/devices is one of them (a new profile must join this test).
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(std::string(FLASHPLAN_SOURCE_DIR) + "/plans/devices"))
    files += e.path().extension() == ".yaml";
  CHECK(files == names.size());
  CHECK(test::shipped_profile("cpu").backend == Backend::Cpu);
  CHECK(test::shipped_profile("h200-141gb").cc() == 90);
  CHECK(test::shipped_profile("gb10").cc() == 121);
  CHECK(test::shipped_profile("b200").cc() == 100);
}

TEST_CASE("profile: unknown key, wrong type, missing field, impossible value") {
  CHECK_NOTHROW(parse_device_profile(kGood, "good.yaml"));

  std::string e = error_of([&] { parse_device_profile(with(kGood, "bandwidth_gbps", "bandwith_gbps"), "typo.yaml"); });
  CHECK(e.find("typo.yaml") != std::string::npos);
  CHECK(e.find("memory.bandwith_gbps") != std::string::npos);  // the unknown key, with its path
  CHECK(e.find("unknown key") != std::string::npos);
  CHECK(e.find("bandwidth_gbps") != std::string::npos);        // what was expected

  e = error_of([&] { parse_device_profile(with(kGood, "sm_count: 100", "sm_count: many"), "type.yaml"); });
  CHECK(e.find("type.yaml") != std::string::npos);
  CHECK(e.find("gpu.sm_count") != std::string::npos);
  CHECK(e.find("'many'") != std::string::npos);
  CHECK(e.find("expected") != std::string::npos);

  e = error_of([&] { parse_device_profile(with(kGood, "bytes: 1000000000", "bytes: 80GB"), "unit.yaml"); });
  CHECK(e.find("memory.bytes") != std::string::npos);
  CHECK(e.find("'80GB'") != std::string::npos);

  e = error_of([&] { parse_device_profile(with(kGood, "  usable_bytes: 900000000\n", ""), "missing.yaml"); });
  CHECK(e.find("missing.yaml") != std::string::npos);
  CHECK(e.find("memory.usable_bytes") != std::string::npos);
  CHECK(e.find("missing") != std::string::npos);

  e = error_of([&] { parse_device_profile(with(kGood, "usable_bytes: 900000000", "usable_bytes: 2000000000"), "big.yaml"); });
  CHECK(e.find("memory.usable_bytes") != std::string::npos);
  CHECK(e.find("2000000000") != std::string::npos);
  CHECK(e.find("usable_bytes <= bytes") != std::string::npos);

  e = error_of([&] { parse_device_profile(with(kGood, "vmm_granularity: 2097152", "vmm_granularity: 3000000"), "g.yaml"); });
  CHECK(e.find("gpu.vmm_granularity") != std::string::npos);
  CHECK(e.find("power of two") != std::string::npos);

  e = error_of([&] { parse_device_profile(with(kGood, "\"9.0\"", "\"nine\""), "cc.yaml"); });
  CHECK(e.find("gpu.compute_capability") != std::string::npos);
  CHECK(e.find("'nine'") != std::string::npos);

  e = error_of([&] { parse_device_profile(with(kGood, "fp8: 1000", "fp8: -1"), "neg.yaml"); });
  CHECK(e.find("gpu.tensor_tflops.fp8") != std::string::npos);
  CHECK(e.find("out of range") != std::string::npos);

  e = error_of([&] { parse_device_profile(with(kGood, "backend: cuda", "backend: rocm"), "b.yaml"); });
  CHECK(e.find("'rocm'") != std::string::npos);
  CHECK(e.find("cuda or cpu") != std::string::npos);

  e = error_of([&] { parse_device_profile("name: x\nmemory: [1, 2\n", "syntax.yaml"); });
  CHECK(e.find("syntax.yaml") != std::string::npos);
  CHECK(e.find("YAML syntax error") != std::string::npos);

  e = error_of([&] { parse_device_profile(std::string(kGood) + "cpu:\n  threads: 2\n  fp32_gflops: 9\n", "mix.yaml"); });
  CHECK(e.find("cpu: not allowed with backend cuda") != std::string::npos);

  e = error_of([&] { parse_device_profile(std::string(kGood) + "host:\n  gpus: 4\n", "host.yaml"); });
  CHECK(e.find("host.gpu_link_gbps") != std::string::npos);

  e = error_of([&] { load_device_profile("/nonexistent/profile.yaml"); });
  CHECK(e.find("/nonexistent/profile.yaml: cannot open device profile") != std::string::npos);

  // A wrong path to something large (a GGUF, a plan) is refused by its size, unread.
  const std::string big = (std::filesystem::temp_directory_path() / "fp_profile_big.yaml").string();
  {
    std::ofstream f(big, std::ios::binary | std::ios::trunc);
    f << std::string((1u << 20) + 1, '#');
  }
  e = error_of([&] { load_device_profile(big); });
  std::filesystem::remove(big);
  CHECK(e.find("more than 1048576 bytes; expected a device profile") != std::string::npos);

  // A directory opens as a stream on Linux but is not a file to read.
  e = error_of([&] { load_device_profile(std::filesystem::temp_directory_path().string()); });
  CHECK(e.find("is a directory; expected a device profile") != std::string::npos);
}

TEST_CASE("profile: host section and measured figures override the datasheet") {
  const std::string text = std::string(kGood) +
                           "host:\n  gpus: 2\n  gpu_link_gbps: 450\n  collective_latency_us: 6\n  memory_bytes: 1099511627776\n"
                           "measured:\n  bandwidth_gbps: 800\n  pcie_gbps: 50\n  launch_us: 1.5\n"
                           "  kernels:\n    - {kernel: cuda.matvec.q8_0, shape: \"matmul t=1 m=8 k=32 w=Q8_0\", us: 3.5}\n";
  const DeviceProfile p = parse_device_profile(text, "m.yaml");
  CHECK(p.host_gpus == 2);
  CHECK(p.host_link_gbps == 450);
  const DeviceRates r = p.rates();
  CHECK(r.bandwidth == doctest::Approx(800e9));
  CHECK(r.host_link == doctest::Approx(50e9));
  CHECK(r.launch_us == doctest::Approx(1.5));
  REQUIRE(p.measured_us("cuda.matvec.q8_0", "matmul t=1 m=8 k=32 w=Q8_0"));
  CHECK(*p.measured_us("cuda.matvec.q8_0", "matmul t=1 m=8 k=32 w=Q8_0") == 3.5);
  CHECK(!p.measured_us("cuda.matvec.q8_0", "matmul t=2 m=8 k=32 w=Q8_0"));

  const std::string e = error_of([&] {
    parse_device_profile(std::string(kGood) + "measured:\n  kernels:\n    - {kernel: cuda.nope, shape: x, us: 1}\n", "k.yaml");
  });
  CHECK(e.find("measured.kernels[0].kernel") != std::string::npos);
  CHECK(e.find("'cuda.nope'") != std::string::npos);
}

TEST_CASE("profile: a key or a measured timing given twice is an error, not a silent first pick") {
  std::string e = error_of([&] {
    parse_device_profile(std::string(kGood) + "measured:\n  launch_us: 1.5\nmeasured:\n  launch_us: 3\n", "d.yaml");
  });
  CHECK(e.find("d.yaml") != std::string::npos);
  CHECK(e.find("measured: key appears twice") != std::string::npos);
  e = error_of([&] { parse_device_profile(std::string(kGood) + "measured:\n  launch_us: 1.5\n  launch_us: 2\n", "d.yaml"); });
  CHECK(e.find("measured.launch_us: key appears twice") != std::string::npos);
  e = error_of([&] {
    parse_device_profile(std::string(kGood) +
                             "measured:\n  kernels:\n"
                             "    - {kernel: cuda.matvec.q8_0, shape: \"matmul t=1 m=8 k=32 w=Q8_0\", us: 3.5}\n"
                             "    - {kernel: cuda.matvec.q8_0, shape: \"matmul t=1 m=8 k=32 w=Q8_0\", us: 4}\n",
                         "d.yaml");
  });
  CHECK(e.find("measured.kernels[1].shape") != std::string::npos);
  CHECK(e.find("listed twice") != std::string::npos);
}
