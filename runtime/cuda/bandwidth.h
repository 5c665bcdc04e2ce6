// Memory-bandwidth ceilings of the current GPU, measured the same way every time so that
// kernel numbers can be stated as a fraction of them (and, later, written into the device
// profile by `flashplan probe`). CUDA-free header.
#pragma once
#include <cstdint>

namespace fp::cuda {

struct Bandwidth {
  double copy_gbps = 0;  // device-to-device cudaMemcpy, bytes read + bytes written per second
  double read_gbps = 0;  // a streaming read kernel (16-byte loads, every byte read once)
};

// Measures with buffers of `bytes` each (well above L2), median of `reps` timed runs.
Bandwidth measure_bandwidth(int64_t bytes = 1ll << 30, int reps = 9);

}  // namespace fp::cuda
