// `flashplan probe [-o profile.yaml] [--device N] [--quick]`: this GPU's device profile.
// Reads what the GPU reports about itself, measures what the planner's cost model
// needs (copy bandwidth, host-to-device copy, cuBLAS GEMM rates in FP32, FP16, BF16
// and INT8), and writes the YAML with planner/profile/probed_profile.h: datasheet
// figures from the matching shipped profile, or stand-ins marked [EDIT].
//
// Every rate is a best-of-N (the GPU's achievable rate, not a typical one), except the
// copy bandwidth, which is the median runtime/cuda/bandwidth.h measures for every
// other ceiling in the project.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "tools/build_commit.h"
#include "ops/core/error.h"
#include "ops/quant/quant_cuda.h"
#include "planner/profile/probed_profile.h"
#include "runtime/cuda/bandwidth.h"
#include "runtime/cuda/vmm.h"
#include "tools/bench_report.h"
#include "tools/command.h"

namespace fp::cli::probe {
namespace {

void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("CUDA error in ", what, ": ", cudaGetErrorString(e));
}

void ckb(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) fail("cuBLAS error in ", what, ": status ", int(s));
}

struct DevBuf {
  void* p = nullptr;
  explicit DevBuf(size_t n) { ck(cudaMalloc(&p, n), "probe buffer"); }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
};

struct Events {
  cudaEvent_t a = nullptr, b = nullptr;
  Events() {
    ck(cudaEventCreate(&a), "event");
    ck(cudaEventCreate(&b), "event");
  }
  ~Events() {
    cudaEventDestroy(a);
    cudaEventDestroy(b);
  }
  // Best time in seconds of `reps` runs of fn on the default stream, after `warm` untimed ones.
  template <typename Fn>
  double best(int warm, int reps, Fn fn) {
    for (int i = 0; i < warm; ++i) fn();
    ck(cudaDeviceSynchronize(), "warm-up");
    float best_ms = 0;
    for (int i = 0; i < reps; ++i) {
      ck(cudaEventRecord(a), "event");
      fn();
      ck(cudaEventRecord(b), "event");
      ck(cudaEventSynchronize(b), "timed run");
      float ms = 0;
      ck(cudaEventElapsedTime(&ms, a, b), "event time");
      if (i == 0 || ms < best_ms) best_ms = ms;
    }
    return double(best_ms) * 1e-3;
  }
};

std::string version_text(int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); }

double h2d_gbps() {
  constexpr size_t kBytes = size_t(1) << 30;
  void* host = nullptr;
  ck(cudaMallocHost(&host, kBytes), "pinned host buffer");
  std::unique_ptr<void, decltype(&cudaFreeHost)> keep(host, &cudaFreeHost);
  std::fill_n(static_cast<char*>(host), kBytes, char(0x5a));
  DevBuf dev(kBytes);
  Events ev;
  const double s = ev.best(1, 5, [&] { ck(cudaMemcpyAsync(dev.p, host, kBytes, cudaMemcpyHostToDevice, nullptr), "h2d"); });
  return double(kBytes) / s / 1e9;
}

// Random operands: the rate of a GEMM depends on its data (power and clocks), so no zeros.
void fill(DType t, void* p, int64_t n, uint64_t seed) {
  cuda::RandomFill f;
  f.seed = seed;
  f.scale = 1.0f;
  cuda::fill_random(t, p, n, f, nullptr);
  ck(cudaGetLastError(), "operand fill");
}

struct GemmRates {
  double fp32 = 0, fp16 = 0, bf16 = 0, int8 = 0;
};

GemmRates gemm_rates(int n) {
  GemmRates r;
  cublasHandle_t h = nullptr;
  ckb(cublasCreate(&h), "cublasCreate");
  std::unique_ptr<cublasContext, decltype(&cublasDestroy)> keep(h, &cublasDestroy);
  ckb(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");  // no TF32 for SGEMM
  const size_t nn = size_t(n) * size_t(n);
  const double flops = 2.0 * double(n) * double(n) * double(n);
  Events ev;
  {
    DevBuf a(nn * 4), b(nn * 4), c(nn * 4);
    fill(DType::F32, a.p, int64_t(nn), 1);
    fill(DType::F32, b.p, int64_t(nn), 2);
    const float one = 1, zero = 0;
    const double s = ev.best(2, 10, [&] {
      ckb(cublasSgemm(h, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, static_cast<float*>(a.p), n,
                      static_cast<float*>(b.p), n, &zero, static_cast<float*>(c.p), n),
          "SGEMM");
    });
    r.fp32 = flops / s / 1e12;
  }
  const struct {
    DType t;
    cudaDataType_t ct;
    double* out;
    const char* what;
  } halves[] = {{DType::F16, CUDA_R_16F, &r.fp16, "FP16 GEMM"}, {DType::BF16, CUDA_R_16BF, &r.bf16, "BF16 GEMM"}};
  for (const auto& hv : halves) {
    DevBuf a(nn * 2), b(nn * 2), c(nn * 2);
    if (cuda::fill_supported(hv.t)) {
      fill(hv.t, a.p, int64_t(nn), 3);
      fill(hv.t, b.p, int64_t(nn), 4);
    } else {
      ck(cudaMemset(a.p, 0x3c, nn * 2), "operand fill");
      ck(cudaMemset(b.p, 0x3b, nn * 2), "operand fill");
    }
    const float one = 1, zero = 0;
    const double s = ev.best(2, 10, [&] {
      ckb(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, a.p, hv.ct, n, b.p, hv.ct, n, &zero, c.p, hv.ct, n,
                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          hv.what);
    });
    *hv.out = flops / s / 1e12;
  }
  {
    // INT8 tensor-core GEMM: A transposed ("TN"), dimensions multiples of 4, INT32 out.
    DevBuf a(nn), b(nn), c(nn * 4);
    fill(DType::I32, a.p, int64_t(nn / 4), 5);
    fill(DType::I32, b.p, int64_t(nn / 4), 6);
    const int32_t one = 1, zero = 0;
    const double s = ev.best(2, 10, [&] {
      ckb(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, a.p, CUDA_R_8I, n, b.p, CUDA_R_8I, n, &zero, c.p,
                       CUDA_R_32I, n, CUBLAS_COMPUTE_32I, CUBLAS_GEMM_DEFAULT),
          "INT8 GEMM");
    });
    r.int8 = flops / s / 1e12;
  }
  return r;
}

ProbedGpu probe(int device, int gemm_n) {
  int count = 0;
  ck(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
  if (device < 0 || device >= count) fail("--device ", device, ": this machine has ", count, " CUDA device(s)");
  ck(cudaSetDevice(device), "cudaSetDevice");
  ck(cudaFree(nullptr), "context creation");
  ProbedGpu g;
  cuda::device_memory(device, g.free_bytes, g.total_bytes);  // before this probe allocates anything
  cudaDeviceProp p{};
  ck(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties");
  g.name = p.name;
  g.cc_major = uint32_t(p.major);
  g.cc_minor = uint32_t(p.minor);
  g.sm_count = uint32_t(p.multiProcessorCount);
  g.total_bytes = p.totalGlobalMem;
  g.l2_bytes = uint64_t(p.l2CacheSize);
  g.smem_per_sm_bytes = p.sharedMemPerMultiprocessor;
  int v = 0;
  ck(cudaDeviceGetAttribute(&v, cudaDevAttrClockRate, device), "clock rate");
  g.sm_clock_mhz = uint32_t(v / 1000);
  ck(cudaDeviceGetAttribute(&v, cudaDevAttrMemoryClockRate, device), "memory clock rate");
  g.memory_clock_mhz = uint32_t(v / 1000);
  ck(cudaDeviceGetAttribute(&v, cudaDevAttrGlobalMemoryBusWidth, device), "memory bus width");
  g.bus_width_bits = uint32_t(v);
  g.vmm_granularity = cuda::vmm_granularity(device);
  g.host_gpus = uint32_t(count);
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page > 0) g.host_memory_bytes = uint64_t(pages) * uint64_t(page);
  ck(cudaDriverGetVersion(&v), "driver version");
  g.driver_version = version_text(v);
  ck(cudaRuntimeGetVersion(&v), "runtime version");
  g.runtime_version = version_text(v);

  std::fprintf(stderr, "probe: %s, cc %u.%u, %u SMs, %.1f GiB; measuring bandwidth...\n", g.name.c_str(), g.cc_major,
               g.cc_minor, g.sm_count, double(g.total_bytes) / double(1ull << 30));
  const cuda::Bandwidth bw = cuda::measure_bandwidth(int64_t(1) << 30, 9);
  g.copy_gbps = bw.copy_gbps;
  g.read_gbps = bw.read_gbps;
  g.h2d_gbps = h2d_gbps();
  std::fprintf(stderr, "probe: copy %.0f GB/s, read %.0f GB/s, host-to-device %.1f GB/s; GEMMs %dx%dx%d...\n",
               g.copy_gbps, g.read_gbps, g.h2d_gbps, gemm_n, gemm_n, gemm_n);
  const GemmRates r = gemm_rates(gemm_n);
  g.fp32_tflops = r.fp32;
  g.fp16_tflops = r.fp16;
  g.bf16_tflops = r.bf16;
  g.int8_tops = r.int8;
  g.gemm_shape = std::to_string(gemm_n) + "x" + std::to_string(gemm_n) + "x" + std::to_string(gemm_n);
  std::fprintf(stderr, "probe: FP32 %.1f, FP16 %.1f, BF16 %.1f TFLOPS; INT8 %.1f TOPS\n", r.fp32, r.fp16, r.bf16, r.int8);
  return g;
}

}  // namespace
}  // namespace fp::cli::probe

FP_COMMAND("probe", "Write this GPU's device profile YAML (properties + measured bandwidth and GEMM rates)",
           [](CLI::App& app) {
  struct Opts {
    std::string out, devices = FLASHPLAN_SOURCE_DIR "/plans/devices";
    int device = 0;
    bool quick = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("-o,--output", o->out, "write the profile here (default: stdout)");
  app.add_option("--device", o->device, "CUDA device index")->capture_default_str();
  app.add_option("--devices", o->devices, "shipped profiles to take datasheet figures from")->capture_default_str();
  app.add_flag("--quick", o->quick, "smaller GEMMs (4096^3 instead of 8192^3)");
  return [o]() {
    std::ofstream file;
    if (!o->out.empty()) {
      file.open(o->out, std::ios::binary | std::ios::trunc);
      if (!file) fp::fail(o->out, ": cannot write -o");
    }
    const std::vector<fp::DeviceProfile> shipped = fp::load_profiles_in(o->devices);
    const fp::ProbedGpu g = fp::cli::probe::probe(o->device, o->quick ? 4096 : 8192);
    const std::string stamp = fp::bench::utc_now() + ", flashplan " FLASHPLAN_VERSION " (" + fp::build_commit() + ")";
    const fp::ProbedProfile p = fp::render_probed_profile(g, shipped, stamp);
    fp::parse_device_profile(p.yaml, "the probed profile");  // what we write must load
    if (file.is_open()) {
      file << p.yaml;
      if (!file) fp::fail(o->out, ": write failed");
    } else {
      std::fputs(p.yaml.c_str(), stdout);
    }
    if (!p.matched.empty())
      std::fprintf(stderr, "probe: datasheet figures from plans/devices/%s.yaml\n", p.matched.c_str());
    else
      std::fprintf(stderr, "probe: no shipped profile matches this GPU; %zu field(s) hold stand-ins to replace:\n",
                   p.edits.size());
    for (const auto& e : p.edits) std::fprintf(stderr, "  %s\n", e.c_str());
    return 0;
  };
});
