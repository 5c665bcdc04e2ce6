// Profile YAML from probed facts (see probed_profile.h). The text mirrors the shipped
// profiles: one value per line, each with a source tag saying where it came from.
#include "planner/profile/probed_profile.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "ops/core/error.h"

namespace fp {
namespace {

// FP32 FMA lanes per SM by compute capability (CUDA C++ Programming Guide, arithmetic
// instruction throughput: 32-bit floating-point multiply-add results per clock per SM).
struct Fp32Lanes {
  uint32_t cc;
  uint32_t lanes;
};
constexpr Fp32Lanes kFp32Lanes[] = {{60, 64},  {61, 128}, {62, 128}, {70, 64},  {72, 64},  {75, 64},
                                    {80, 64},  {86, 128}, {87, 128}, {89, 128}, {90, 128}, {100, 128},
                                    {101, 128}, {103, 128}, {110, 128}, {120, 128}, {121, 128}};

uint32_t fp32_lanes(uint32_t cc) {
  for (const auto& e : kFp32Lanes)
    if (e.cc == cc) return e.lanes;
  return 0;
}

constexpr uint32_t kFp8MinCc = 89;  // FP8 tensor cores: Ada (8.9) and newer

std::string fmt(double v, int decimals) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", decimals, v);
  return b;
}

// YAML double-quoted scalar.
std::string quoted(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += (static_cast<unsigned char>(c) < 0x20) ? ' ' : c;
  }
  return o + "\"";
}

class Writer {
 public:
  void comment(const std::string& text) { out_ << "# " << text << "\n"; }
  void section(int indent, const std::string& key, const std::string& note = "") {
    std::string head = std::string(size_t(indent), ' ') + key + ":";
    out_ << pad(head, note) << "\n";
  }
  void value(int indent, const std::string& key, const std::string& v, const std::string& note) {
    out_ << pad(std::string(size_t(indent), ' ') + key + ": " + v, note) << "\n";
  }
  std::string text() const { return out_.str(); }

 private:
  static std::string pad(std::string s, const std::string& note) {
    if (note.empty()) return s;
    if (s.size() < 30) s.resize(30, ' ');
    else s += "  ";
    return s + "# " + note;
  }
  std::ostringstream out_;
};

}  // namespace

std::vector<DeviceProfile> load_profiles_in(const std::string& dir) {
  namespace fs = std::filesystem;
  std::vector<DeviceProfile> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  std::vector<std::string> paths;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".yaml") paths.push_back(e.path().string());
  std::sort(paths.begin(), paths.end());
  for (const auto& p : paths) out.push_back(load_device_profile(p));
  return out;
}

const DeviceProfile* match_profile(const ProbedGpu& g, const std::vector<DeviceProfile>& shipped) {
  for (const auto& p : shipped) {
    // A host profile of several GPUs (2x-h100-...) describes links and counts, not the GPU:
    // the datasheet figures come from the one-GPU profile.
    if (p.backend != Backend::Cuda || p.host_gpus > 1 || p.cc_major != g.cc_major || p.cc_minor != g.cc_minor ||
        p.sm_count != g.sm_count || g.total_bytes == 0)
      continue;
    const double rel = std::fabs(double(p.memory_bytes) - double(g.total_bytes)) / double(g.total_bytes);
    if (rel <= 0.03) return &p;
  }
  return nullptr;
}

std::string profile_name_for(const std::string& gpu_name) {
  std::string n;
  for (char c : gpu_name) {
    const char l = char(std::tolower(static_cast<unsigned char>(c)));
    if ((l >= 'a' && l <= 'z') || (l >= '0' && l <= '9')) n += l;
    else if (!n.empty() && n.back() != '-') n += '-';
  }
  while (!n.empty() && n.back() == '-') n.pop_back();
  if (n.size() > 64) n.resize(64);
  while (!n.empty() && n.back() == '-') n.pop_back();
  return n.empty() ? "gpu" : n;
}

ProbedProfile render_probed_profile(const ProbedGpu& g, const std::vector<DeviceProfile>& shipped,
                                    const std::string& stamp) {
  if (g.cc_major == 0 || g.sm_count == 0 || g.total_bytes == 0)
    fail("probe: GPU '", g.name, "' reported compute capability ", g.cc_major, ".", g.cc_minor, ", ", g.sm_count,
         " SMs, ", g.total_bytes, " bytes; expected a CUDA device");
  ProbedProfile res;
  const DeviceProfile* ship = match_profile(g, shipped);
  if (ship) res.matched = ship->name;
  const std::string ship_tag = ship ? "[ship] " + ship->name : "";
  const uint32_t cc = g.cc_major * 10 + g.cc_minor;
  auto edit = [&](const std::string& field, const std::string& why) {
    res.edits.push_back(field + ": " + why);
    return "[EDIT] " + why;
  };

  Writer w;
  w.comment(g.name + " (compute capability " + std::to_string(g.cc_major) + "." + std::to_string(g.cc_minor) +
            "), written by `flashplan probe`, " + stamp + ".");
  w.comment("Driver " + g.driver_version + ", CUDA runtime " + g.runtime_version + ". Schema: schemas/device_profile.md.");
  w.comment("Sources:");
  w.comment("  [probe] read from this GPU (cudaGetDeviceProperties, device attributes, cudaMemGetInfo,");
  w.comment("          cuMemGetAllocationGranularity)");
  w.comment("  [meas]  measured on this GPU by `flashplan probe` (method given)");
  if (ship) {
    w.comment("  [ship]  plans/devices/" + ship->name + ".yaml, the shipped profile of this GPU (same cc, SMs, memory)");
  } else {
    w.comment("  [calc]  computed from probed values (formula given)");
    w.comment("  [EDIT]  not knowable from the GPU and no shipped profile matched: a stand-in; replace it");
    w.comment("          with the datasheet figure");
  }

  const std::string name = ship ? ship->name : profile_name_for(g.name);
  w.value(0, "name", name, ship ? "[ship]" : "from the GPU name");
  w.value(0, "description", quoted(g.name + " (probed)"), "");
  w.value(0, "backend", "cuda", "");

  // ---- memory ----
  w.section(0, "memory");
  w.value(2, "bytes", std::to_string(g.total_bytes), "[probe] totalGlobalMem");
  const uint64_t usable = std::min(g.free_bytes ? g.free_bytes : g.total_bytes, g.total_bytes);
  w.value(2, "usable_bytes", std::to_string(usable), "[probe] cudaMemGetInfo free right after context creation");
  const double calc_bw = 2.0 * double(g.memory_clock_mhz) * 1e6 * double(g.bus_width_bits) / 8.0 / 1e9;
  if (ship) {
    w.value(2, "bandwidth_gbps", fmt(ship->bandwidth_gbps, 0), ship_tag);
  } else if (calc_bw > 0) {
    w.value(2, "bandwidth_gbps", fmt(calc_bw, 0),
            "[calc] 2 x memory clock " + std::to_string(g.memory_clock_mhz) + " MHz x " +
                std::to_string(g.bus_width_bits) + "-bit bus");
  } else {
    w.value(2, "bandwidth_gbps", fmt(std::max(g.copy_gbps, 1.0), 0),
            edit("memory.bandwidth_gbps", "measured copy bandwidth as a stand-in"));
  }
  w.value(2, "l2_bytes", std::to_string(g.l2_bytes), "[probe] l2CacheSize");

  // ---- gpu ----
  w.section(0, "gpu");
  w.value(2, "compute_capability", quoted(std::to_string(g.cc_major) + "." + std::to_string(g.cc_minor)), "[probe]");
  w.value(2, "sm_count", std::to_string(g.sm_count), "[probe]");
  w.value(2, "smem_per_sm_bytes", std::to_string(g.smem_per_sm_bytes), "[probe] sharedMemPerMultiprocessor");
  w.value(2, "sm_clock_mhz", std::to_string(g.sm_clock_mhz), "[probe] max SM clock");
  if (g.memory_clock_mhz > 0) w.value(2, "memory_clock_mhz", std::to_string(g.memory_clock_mhz), "[probe] max memory clock");
  const uint32_t lanes = fp32_lanes(cc);
  if (ship) {
    w.value(2, "fp32_tflops", fmt(ship->fp32_tflops, 1), ship_tag);
  } else if (lanes > 0 && g.sm_clock_mhz > 0) {
    const double t = double(g.sm_count) * lanes * 2.0 * g.sm_clock_mhz * 1e6 / 1e12;
    w.value(2, "fp32_tflops", fmt(t, 1),
            "[calc] " + std::to_string(g.sm_count) + " SMs x " + std::to_string(lanes) + " FMA lanes x 2 x max clock");
  } else {
    w.value(2, "fp32_tflops", fmt(std::max(g.fp32_tflops, 0.1), 1),
            edit("gpu.fp32_tflops", "measured SGEMM rate as a stand-in"));
  }
  w.section(2, "tensor_tflops", "dense, FP32 accumulate");
  struct Rate {
    const char* key;
    double shipped, measured;
  };
  const Rate rates[] = {{"fp16", ship ? ship->fp16_tflops : 0, g.fp16_tflops},
                        {"bf16", ship ? ship->bf16_tflops : 0, g.bf16_tflops},
                        {"fp8", ship ? ship->fp8_tflops : 0, 0},
                        {"int8", ship ? ship->int8_tops : 0, g.int8_tops}};
  for (const Rate& r : rates) {
    const std::string field = std::string("gpu.tensor_tflops.") + r.key;
    if (ship) {
      w.value(4, r.key, fmt(r.shipped, 1), ship_tag);
    } else if (std::string(r.key) == "fp8" && cc < kFp8MinCc) {
      w.value(4, r.key, "0", "no FP8 tensor cores below compute capability 8.9");
    } else if (std::string(r.key) == "fp8") {
      w.value(4, r.key, fmt(2 * g.fp16_tflops, 1), edit(field, "2 x measured FP16 GEMM as a stand-in"));
    } else {
      w.value(4, r.key, fmt(r.measured, 1), edit(field, "measured cuBLAS GEMM rate as a stand-in"));
    }
  }
  if (g.vmm_granularity > 0)
    w.value(2, "vmm_granularity", std::to_string(g.vmm_granularity), "[probe] cuMemGetAllocationGranularity");
  else
    w.value(2, "vmm_granularity", "2097152", edit("gpu.vmm_granularity", "not probed; 2 MiB, the usual value"));

  // ---- links ----
  w.section(0, "links");
  if (ship) {
    w.value(2, "pcie_gbps", fmt(ship->pcie_gbps, 0), ship_tag);
    w.value(2, "nvlink_gbps", fmt(ship->nvlink_gbps, 0), ship_tag);
  } else {
    w.value(2, "pcie_gbps", fmt(std::max(g.h2d_gbps, 0.1), 0),
            edit("links.pcie_gbps", "measured host-to-device copy as a stand-in"));
    w.value(2, "nvlink_gbps", "0", edit("links.nvlink_gbps", "NVLink not probed; 0 = none"));
  }

  // ---- host ----
  w.section(0, "host");
  w.value(2, "gpus", std::to_string(std::max<uint32_t>(1, g.host_gpus)), "[probe] cudaGetDeviceCount");
  if (g.host_memory_bytes > 0) w.value(2, "memory_bytes", std::to_string(g.host_memory_bytes), "[probe] host RAM");
  if (g.host_gpus > 1) {
    if (ship && ship->nvlink_gbps > 0) w.value(2, "gpu_link_gbps", fmt(ship->nvlink_gbps, 0), ship_tag + " NVLink");
    else w.value(2, "gpu_link_gbps", fmt(std::max(g.h2d_gbps, 0.1), 0),
                 edit("host.gpu_link_gbps", "GPU-to-GPU link not probed; PCIe copy rate as a stand-in"));
    w.value(2, "collective_latency_us", "10",
            edit("host.collective_latency_us", "collective latency not probed; measure it with nccl-tests"));
  }

  // ---- measured ----
  const bool any = g.copy_gbps > 0 || g.h2d_gbps > 0 || g.fp32_tflops > 0 || g.fp16_tflops > 0 ||
                   g.bf16_tflops > 0 || g.int8_tops > 0;
  if (any) {
    w.section(0, "measured");
    if (g.copy_gbps > 0)
      w.value(2, "bandwidth_gbps", fmt(g.copy_gbps, 0),
              "[meas] 1 GiB device-to-device cudaMemcpy, read + write counted, median of 9" +
                  (g.read_gbps > 0 ? "; streaming read: " + fmt(g.read_gbps, 0) + " GB/s" : std::string()));
    if (g.h2d_gbps > 0) w.value(2, "pcie_gbps", fmt(g.h2d_gbps, 1), "[meas] 1 GiB pinned host-to-device cudaMemcpy, best of 5");
    if (g.fp32_tflops > 0) w.value(2, "fp32_tflops", fmt(g.fp32_tflops, 1), "[meas] cuBLAS SGEMM " + g.gemm_shape + ", best of 10");
    if (g.fp16_tflops > 0 || g.bf16_tflops > 0 || g.int8_tops > 0) {
      w.section(2, "tensor_tflops", "[meas] cublasGemmEx " + g.gemm_shape + ", best of 10");
      if (g.fp16_tflops > 0) w.value(4, "fp16", fmt(g.fp16_tflops, 1), "FP16 in, FP32 accumulate");
      if (g.bf16_tflops > 0) w.value(4, "bf16", fmt(g.bf16_tflops, 1), "BF16 in, FP32 accumulate");
      if (g.int8_tops > 0) w.value(4, "int8", fmt(g.int8_tops, 1), "INT8 in, INT32 accumulate (TOPS)");
    }
  }
  res.yaml = w.text();
  return res;
}

}  // namespace fp
