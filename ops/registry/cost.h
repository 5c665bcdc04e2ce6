// Building blocks of the kernel cost functions: a roofline over bytes and FLOPs with
// per-kernel efficiencies, and a parallelism factor for kernels too small to fill the
// device. Numbers are predictions for choosing between variants, not promises; a
// profile's measured timings replace them (ops/registry/kernel_registry.h).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "ops/registry/kernel_registry.h"

namespace fp::cost {

struct Pass {
  double dev_bytes = 0;    // bytes moved in device memory
  double host_bytes = 0;   // bytes read from host-mapped memory over the host link
  double flops = 0;
  double rate = 0;         // flop/s of the unit doing the math (0 = no math term)
  double bw_eff = 0.8;     // fraction of peak bandwidth this kernel reaches
  double flop_eff = 0.6;   // fraction of peak math rate
  double parallel = 1;     // fraction of the device the launch can occupy (0, 1]
};

// Microseconds for one pass, launch overhead included.
inline double us(const Pass& p, const DeviceRates& r) {
  const double par = std::clamp(p.parallel, 1e-3, 1.0);
  double mem = 0;
  if (p.dev_bytes > 0 && r.bandwidth > 0) mem += p.dev_bytes / (r.bandwidth * p.bw_eff * par);
  if (p.host_bytes > 0) {
    const double link = r.host_link > 0 ? r.host_link : r.bandwidth * 0.05;
    mem += p.host_bytes / (link * 0.8);
  }
  double math = 0;
  if (p.flops > 0 && p.rate > 0) math = p.flops / (p.rate * p.flop_eff * par);
  return std::max(mem, math) * 1e6 + r.launch_us;
}

// Fraction of the device `blocks` thread blocks keep busy (2 resident blocks per SM
// are needed to hide latency). CPU: fraction of threads given `units` independent rows.
inline double parallel_fraction(double blocks, const DeviceRates& r) {
  const double slots = r.backend == Backend::Cuda ? 2.0 * std::max<uint32_t>(r.sm_count, 1)
                                                  : std::max<uint32_t>(r.sm_count, 1);
  return std::clamp(blocks / slots, 1e-3, 1.0);
}

// GEMM-like kernels split K when the output tiles alone cannot fill the device.
inline double gemm_parallel(double tiles, double k, const DeviceRates& r) {
  const double slots = 2.0 * std::max<uint32_t>(r.sm_count, 1);
  const double splits = std::clamp(slots / std::max(tiles, 1.0), 1.0, std::max(1.0, k / 256.0));
  return parallel_fraction(tiles * splits, r);
}

inline uint32_t ceil_div(int64_t a, int64_t b) { return static_cast<uint32_t>((a + b - 1) / b); }

// Weights per SM per clock the CUDA-core decode matvecs of a low-bit type sustain: their
// limit is instruction issue, not bytes (the same microseconds on an H100 at 2970 GB/s and
// an H200 at 4248 GB/s). Measured on an H200 (132 SMs, 1980 MHz), 2026-12-02: the per-slot
// MoE path at 2048 tokens decoded 12288 slots x 25.2M weights (IQ2_XXS gate and up, Q2_K
// down) in 45.0 ms, 26 weights per SM per clock (bench/results/moe-prefill-h200-2026-12-02-v2.csv);
// a single 6-slot call adds 3-5 us of fixed cost on top (matvec-h200-2026-12-02.md).
// 0: no measured decode bound (the bytes rule alone; Q4_K was not measured at scale).
inline double decode_weights_per_sm_clock(DType t) {
  switch (t) {
    case DType::IQ2_XXS:
    case DType::Q2_K: return 26.0;
    default: return 0;
  }
}

// Weights per second a device decodes for the slowest of `types` (0: none is bound by its
// decode). A CUDA SM retires 256 FP32 flops a clock, so SMs x clock = fp32 / 256.
inline double decode_rate(const std::vector<DType>& types, const DeviceRates& r) {
  double rate = 0;
  for (DType t : types) {
    const double w = decode_weights_per_sm_clock(t);
    if (w <= 0 || r.backend != Backend::Cuda || r.fp32 <= 0) continue;
    const double v = r.fp32 / 256.0 * w;
    rate = rate == 0 ? v : std::min(rate, v);
  }
  return rate;
}

}  // namespace fp::cost
