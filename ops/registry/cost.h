// Building blocks of the kernel cost functions: a roofline over bytes and FLOPs with
// per-kernel efficiencies, and a parallelism factor for kernels too small to fill the
// device. Numbers are predictions for choosing between variants, not promises; a
// profile's measured timings replace them (ops/registry/kernel_registry.h).
#pragma once
#include <algorithm>
#include <cstdint>

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

}  // namespace fp::cost
