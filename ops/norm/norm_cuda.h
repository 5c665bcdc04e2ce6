// Host entry of the norm family's CUDA kernels (norm.cu): RMSNorm over rows (weighted,
// or unweighted with w = nullptr) and the elementwise add of the FFN (f = moe + shared).
// Same arithmetic as the CPU reference: sum of squares in double, scale in f32,
// y = x·scale·w; results differ from it only by the order of the double sum.
// CUDA-free header.
#pragma once
#include <cstdint>

#include "ops/core/launch.h"

namespace fp::cuda {

// n rows of dim values (row stride dim); x and y may alias. Launch: stream and PDL.
void rms_norm(const float* x, const float* w, float* y, int64_t n, int64_t dim, float eps, Launch l);

// y[i] = a[i] + b[i] for i < n (y may alias a or b).
void add(const float* a, const float* b, float* y, int64_t n, Launch l);

}  // namespace fp::cuda
