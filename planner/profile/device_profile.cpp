// Strict YAML reading of device profiles (schemas/device_profile.md). Every mapping is
// read through a Section that remembers which keys it consumed, so an unknown key (a
// typo) is an error rather than a silently ignored number.
#include "planner/profile/device_profile.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <set>
#include <sstream>

#include "ops/core/error.h"
#include "ops/core/text_file.h"

namespace fp {

namespace {

// Default per-kernel overheads when a profile has no measured figure: a kernel node of
// a replayed CUDA graph, and a call of the CPU executor.
constexpr double kDefaultCudaLaunchUs = 2.0;
constexpr double kDefaultCpuLaunchUs = 0.5;

class Section {
 public:
  Section(YAML::Node node, std::string path, const std::string& file) : node_(node), path_(std::move(path)), file_(file) {
    if (!node_.IsMap()) fail(file_, ": ", where(""), ": expected a mapping of keys, found ", kind(node_));
    // YAML forbids repeated keys but yaml-cpp keeps them and reads the first: a second
    // `measured:` appended to a profile would be ignored without a word.
    std::set<std::string> keys;
    for (const auto& kv : node_) {
      const std::string k = kv.first.as<std::string>();
      if (!keys.insert(k).second) fail(file_, ": ", where(k), ": key appears twice; expected each key once");
    }
  }

  bool has(const std::string& key) const { return static_cast<bool>(node_[key]); }

  uint64_t u64(const std::string& key, uint64_t lo, uint64_t hi, const char* expected) {
    auto v = scalar(key);
    uint64_t x = 0;
    const char* b = v.data();
    const char* e = b + v.size();
    auto [p, ec] = std::from_chars(b, e, x);
    if (v.empty() || ec != std::errc() || p != e)
      fail(file_, ": ", where(key), ": value '", v, "' is not a whole number; expected ", expected);
    if (x < lo || x > hi) fail(file_, ": ", where(key), ": value ", x, " is out of range; expected ", expected);
    return x;
  }
  uint64_t u64_or(const std::string& key, uint64_t def, uint64_t lo, uint64_t hi, const char* expected) {
    return has(key) ? u64(key, lo, hi, expected) : (seen_.insert(key), def);
  }

  double num(const std::string& key, double lo, double hi, const char* expected) {
    auto v = scalar(key);
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (v.empty() || end != v.c_str() + v.size() || !std::isfinite(x))
      fail(file_, ": ", where(key), ": value '", v, "' is not a number; expected ", expected);
    if (x < lo || x > hi) fail(file_, ": ", where(key), ": value ", v, " is out of range; expected ", expected);
    return x;
  }
  double num_or(const std::string& key, double def, double lo, double hi, const char* expected) {
    return has(key) ? num(key, lo, hi, expected) : (seen_.insert(key), def);
  }

  std::string text(const std::string& key, const char* expected) { return scalar(key, expected); }
  std::string text_or(const std::string& key, std::string def) { return has(key) ? scalar(key) : (seen_.insert(key), def); }

  Section section(const std::string& key) {
    if (!has(key)) fail(file_, ": ", where(key), ": missing; expected a mapping");
    seen_.insert(key);
    return Section(node_[key], where(key), file_);
  }
  YAML::Node sequence(const std::string& key) {
    seen_.insert(key);
    YAML::Node n = node_[key];
    if (!n.IsSequence()) fail(file_, ": ", where(key), ": expected a list, found ", kind(n));
    return n;
  }

  // Every key of the mapping must have been read.
  void finish() const {
    for (const auto& kv : node_) {
      const std::string k = kv.first.as<std::string>();
      if (!seen_.count(k)) fail(file_, ": ", where(k), ": unknown key; expected one of ", allowed());
    }
  }
  // Declares the keys this mapping may have and refuses any other at once, so that a
  // typo is reported as the unknown key it is, not as the missing key it replaced.
  void allow(std::initializer_list<const char*> keys) {
    for (auto* k : keys) allowed_.push_back(k);
    for (const auto& kv : node_) {
      const std::string k = kv.first.as<std::string>();
      if (std::find(allowed_.begin(), allowed_.end(), k) == allowed_.end())
        fail(file_, ": ", where(k), ": unknown key; expected one of ", allowed());
    }
  }
  std::string where(const std::string& key) const {
    if (key.empty()) return path_.empty() ? "top level" : path_;
    return path_.empty() ? key : path_ + "." + key;
  }
  const std::string& file() const { return file_; }

 private:
  std::string scalar(const std::string& key, const char* expected = "a value") {
    seen_.insert(key);
    YAML::Node n = node_[key];
    if (!n) fail(file_, ": ", where(key), ": missing; expected ", expected);
    if (!n.IsScalar()) fail(file_, ": ", where(key), ": expected a single value, found ", kind(n));
    return n.Scalar();
  }
  static const char* kind(const YAML::Node& n) {
    if (!n || n.IsNull()) return "nothing";
    if (n.IsSequence()) return "a list";
    if (n.IsMap()) return "a mapping";
    return "a single value";
  }
  std::string allowed() const {
    std::string s;
    for (size_t i = 0; i < allowed_.size(); ++i) s += (i ? ", " : "") + allowed_[i];
    return s;
  }

  YAML::Node node_;
  std::string path_;
  const std::string& file_;
  std::set<std::string> seen_;
  std::vector<std::string> allowed_;
};

constexpr uint64_t kMaxBytes = uint64_t(1) << 50;  // 1 PiB: anything larger is a typo

void read_gpu(Section s, DeviceProfile& p) {
  s.allow({"compute_capability", "sm_count", "smem_per_sm_bytes", "sm_clock_mhz", "memory_clock_mhz", "fp32_tflops",
           "tensor_tflops", "vmm_granularity"});
  const std::string cc = s.text("compute_capability", "\"MAJOR.MINOR\", e.g. \"9.0\"");
  unsigned major = 0, minor = 0;
  char dot = 0, extra = 0;
  std::istringstream is(cc);
  if (!(is >> major >> dot >> minor) || dot != '.' || (is >> extra) || major < 3 || major > 20 || minor > 9)
    fail(s.file(), ": ", s.where("compute_capability"), ": value '", cc, "' is not a compute capability; expected ",
         "\"MAJOR.MINOR\" between 3.0 and 20.9, e.g. \"9.0\"");
  p.cc_major = major;
  p.cc_minor = minor;
  p.sm_count = static_cast<uint32_t>(s.u64("sm_count", 1, 4096, "a count of SMs between 1 and 4096"));
  p.smem_per_sm_bytes = s.u64("smem_per_sm_bytes", 1024, 16u << 20, "bytes between 1 KiB and 16 MiB");
  p.sm_clock_mhz = static_cast<uint32_t>(s.u64("sm_clock_mhz", 100, 10000, "MHz between 100 and 10000"));
  p.memory_clock_mhz =
      static_cast<uint32_t>(s.u64_or("memory_clock_mhz", 0, 100, 100000, "MHz between 100 and 100000 (or leave out)"));
  p.fp32_tflops = s.num("fp32_tflops", 0.01, 1e5, "TFLOPS > 0");
  Section t = s.section("tensor_tflops");
  t.allow({"fp16", "bf16", "fp8", "int8"});
  p.fp16_tflops = t.num("fp16", 0, 1e6, "dense TFLOPS >= 0 (0 = not supported)");
  p.bf16_tflops = t.num("bf16", 0, 1e6, "dense TFLOPS >= 0 (0 = not supported)");
  p.fp8_tflops = t.num("fp8", 0, 1e6, "dense TFLOPS >= 0 (0 = not supported)");
  p.int8_tops = t.num("int8", 0, 1e6, "dense TOPS >= 0 (0 = not supported)");
  t.finish();
  p.vmm_granularity = s.u64("vmm_granularity", 4096, 1u << 30, "bytes, a power of two between 4 KiB and 1 GiB");
  if ((p.vmm_granularity & (p.vmm_granularity - 1)) != 0)
    fail(s.file(), ": ", s.where("vmm_granularity"), ": value ", p.vmm_granularity,
         " is not a power of two; expected bytes, a power of two between 4 KiB and 1 GiB");
  s.finish();
}

void read_measured(Section s, DeviceProfile& p) {
  s.allow({"bandwidth_gbps", "pcie_gbps", "launch_us", "fp32_tflops", "tensor_tflops", "kernels"});
  p.measured_bandwidth_gbps = s.num_or("bandwidth_gbps", 0, 0.001, 1e6, "GB/s > 0");
  p.measured_pcie_gbps = s.num_or("pcie_gbps", 0, 0.001, 1e5, "GB/s > 0");
  p.measured_launch_us = s.num_or("launch_us", 0, 0.001, 1e4, "microseconds > 0");
  p.measured_fp32_tflops = s.num_or("fp32_tflops", 0, 0.001, 1e5, "TFLOPS > 0");
  if (s.has("tensor_tflops")) {
    Section t = s.section("tensor_tflops");
    t.allow({"fp16", "bf16", "fp8", "int8"});
    p.measured_fp16_tflops = t.num_or("fp16", 0, 0.001, 1e6, "dense TFLOPS > 0");
    p.measured_bf16_tflops = t.num_or("bf16", 0, 0.001, 1e6, "dense TFLOPS > 0");
    p.measured_fp8_tflops = t.num_or("fp8", 0, 0.001, 1e6, "dense TFLOPS > 0");
    p.measured_int8_tops = t.num_or("int8", 0, 0.001, 1e6, "dense TOPS > 0");
    t.finish();
  }
  if (s.has("kernels")) {
    YAML::Node list = s.sequence("kernels");
    for (size_t i = 0; i < list.size(); ++i) {
      Section e(list[i], s.where("kernels") + "[" + std::to_string(i) + "]", s.file());
      e.allow({"kernel", "shape", "us"});
      MeasuredKernel m;
      m.kernel = e.text("kernel", "a registered kernel id");
      if (!find_kernel(m.kernel))
        fail(s.file(), ": ", e.where("kernel"), ": value '", m.kernel, "' is not a registered kernel; expected a ",
             "kernel id such as cuda.matvec.q8_0 (`flashplan kernels` lists them)");
      m.shape = e.text("shape", "a shape key such as \"matmul t=1 m=32768 k=1024 w=Q8_0\"");
      m.us = e.num("us", 1e-6, 1e9, "microseconds > 0");
      e.finish();
      for (const MeasuredKernel& o : p.measured)
        if (o.kernel == m.kernel && o.shape == m.shape)
          fail(s.file(), ": ", e.where("shape"), ": kernel ", m.kernel, " with shape '", m.shape,
               "' is listed twice; expected one timing for each kernel and shape key");
      p.measured.push_back(std::move(m));
    }
  }
  s.finish();
}

}  // namespace

DeviceRates DeviceProfile::rates() const {
  DeviceRates r;
  r.backend = backend;
  const double bw = measured_bandwidth_gbps > 0 ? measured_bandwidth_gbps : bandwidth_gbps;
  r.bandwidth = bw * 1e9;
  r.l2_bytes = static_cast<double>(l2_bytes);
  if (backend == Backend::Cuda) {
    r.cc = cc();
    r.sm_count = sm_count;
    const double link = measured_pcie_gbps > 0 ? measured_pcie_gbps : pcie_gbps;
    r.host_link = link * 1e9;
    auto pick = [](double measured, double datasheet) { return (measured > 0 ? measured : datasheet) * 1e12; };
    r.fp32 = pick(measured_fp32_tflops, fp32_tflops);
    r.fp16 = pick(measured_fp16_tflops, fp16_tflops);
    r.bf16 = pick(measured_bf16_tflops, bf16_tflops);
    r.fp8 = pick(measured_fp8_tflops, fp8_tflops);
    r.int8 = pick(measured_int8_tops, int8_tops);
    r.launch_us = measured_launch_us > 0 ? measured_launch_us : kDefaultCudaLaunchUs;
    r.devices = std::max<uint32_t>(host_gpus, 1);
    r.gpu_link = host_link_gbps * 1e9;
    r.collective_latency_us = collective_latency_us;
  } else {
    r.sm_count = cpu_threads;
    r.host_link = r.bandwidth;  // host memory is the CPU's own memory
    r.fp32 = r.fp16 = r.bf16 = r.fp8 = r.int8 = cpu_fp32_gflops * 1e9;
    r.launch_us = measured_launch_us > 0 ? measured_launch_us : kDefaultCpuLaunchUs;
  }
  return r;
}

std::optional<double> DeviceProfile::measured_us(std::string_view kernel, std::string_view shape) const {
  for (const auto& m : measured)
    if (m.kernel == kernel && m.shape == shape) return m.us;
  return std::nullopt;
}

DeviceProfile parse_device_profile(std::string_view yaml_text, const std::string& source) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    fail(source, ": YAML syntax error at line ", e.mark.line + 1, ", column ", e.mark.column + 1, ": ", e.msg,
         "; expected a device profile (schemas/device_profile.md)");
  }
  DeviceProfile p;
  p.source = source;
  Section top(root, "", source);
  top.allow({"name", "description", "backend", "memory", "gpu", "cpu", "links", "host", "measured"});

  p.name = top.text("name", "a profile name such as h100-sxm-80gb");
  const bool name_ok = !p.name.empty() && p.name.size() <= 64 &&
                       std::all_of(p.name.begin(), p.name.end(), [](char c) {
                         return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
                       });
  if (!name_ok)
    fail(source, ": name: value '", p.name, "' is not a profile name; expected 1-64 characters of a-z, 0-9, '-', '_', '.'");
  p.description = top.text_or("description", "");

  const std::string backend = top.text("backend", "cuda or cpu");
  if (backend == "cuda") p.backend = Backend::Cuda;
  else if (backend == "cpu") p.backend = Backend::Cpu;
  else fail(source, ": backend: value '", backend, "' is not a backend; expected cuda or cpu");

  Section mem = top.section("memory");
  mem.allow({"bytes", "usable_bytes", "bandwidth_gbps", "l2_bytes"});
  p.memory_bytes = mem.u64("bytes", 1u << 20, kMaxBytes, "bytes between 1 MiB and 1 PiB");
  p.usable_bytes = mem.u64("usable_bytes", 1u << 20, kMaxBytes, "bytes between 1 MiB and 1 PiB");
  if (p.usable_bytes > p.memory_bytes)
    fail(source, ": memory.usable_bytes: value ", p.usable_bytes, " is larger than memory.bytes (", p.memory_bytes,
         "); expected usable_bytes <= bytes");
  p.bandwidth_gbps = mem.num("bandwidth_gbps", 0.1, 1e6, "GB/s > 0");
  p.l2_bytes = mem.u64_or("l2_bytes", 0, 0, 1ull << 34, "bytes (0 = unknown)");
  mem.finish();

  if (p.backend == Backend::Cuda) {
    if (top.has("cpu")) fail(source, ": cpu: not allowed with backend cuda; expected a gpu section instead");
    read_gpu(top.section("gpu"), p);
    Section links = top.section("links");
    links.allow({"pcie_gbps", "nvlink_gbps"});
    p.pcie_gbps = links.num("pcie_gbps", 0.1, 1e5, "GB/s per direction > 0");
    p.nvlink_gbps = links.num_or("nvlink_gbps", 0, 0, 1e5, "GB/s per direction >= 0 (0 = none)");
    links.finish();
  } else {
    if (top.has("gpu")) fail(source, ": gpu: not allowed with backend cpu; expected a cpu section instead");
    if (top.has("links")) fail(source, ": links: not allowed with backend cpu; expected no links section");
    Section cpu = top.section("cpu");
    cpu.allow({"threads", "fp32_gflops"});
    p.cpu_threads = static_cast<uint32_t>(cpu.u64("threads", 1, 4096, "a thread count between 1 and 4096"));
    p.cpu_fp32_gflops = cpu.num("fp32_gflops", 0.1, 1e6, "GFLOPS > 0");
    cpu.finish();
    p.vmm_granularity = 4096;  // host pages
  }

  p.host_gpus = p.backend == Backend::Cuda ? 1 : 0;
  if (top.has("host")) {
    Section host = top.section("host");
    host.allow({"gpus", "memory_bytes", "gpu_link_gbps", "collective_latency_us"});
    const uint64_t lo = p.backend == Backend::Cuda ? 1 : 0;
    p.host_gpus = static_cast<uint32_t>(host.u64_or("gpus", p.host_gpus, lo, 64,
                                                    p.backend == Backend::Cuda ? "1..64 GPUs" : "0..64 GPUs"));
    p.host_memory_bytes = host.u64_or("memory_bytes", 0, 0, kMaxBytes, "bytes (0 = not stated)");
    p.host_link_gbps = host.num_or("gpu_link_gbps", 0, 0, 1e5, "GB/s per direction >= 0");
    p.collective_latency_us = host.num_or("collective_latency_us", 0, 0.01, 1e4, "microseconds > 0");
    host.finish();
    if (p.host_gpus > 1 && p.host_link_gbps <= 0)
      fail(source, ": host.gpu_link_gbps: missing with host.gpus = ", p.host_gpus,
           "; expected the GPU-to-GPU bandwidth when a host has several GPUs");
    if (p.host_gpus > 1 && p.collective_latency_us <= 0)
      fail(source, ": host.collective_latency_us: missing with host.gpus = ", p.host_gpus,
           "; expected the fixed cost in microseconds of one collective between the host's GPUs");
    if (p.host_gpus > 1 && p.backend != Backend::Cuda)
      fail(source, ": host.gpus: value ", p.host_gpus, " with backend cpu; expected 0 (multi-GPU plans need backend cuda)");
  }
  if (top.has("measured")) read_measured(top.section("measured"), p);
  top.finish();
  return p;
}

DeviceProfile load_device_profile(const std::string& path) {
  // A profile is a page of YAML; 1 MiB bounds a wrong path (a GGUF, a plan) before it is read.
  return parse_device_profile(read_text_file(path, "device profile (YAML, see plans/devices/)", 1u << 20), path);
}

}  // namespace fp
