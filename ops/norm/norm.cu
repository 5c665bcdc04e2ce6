// CUDA kernels of the norm family (see norm_cuda.h): one block per row for RMSNorm, a
// grid-stride loop for the add.
#include <algorithm>

#include "ops/core/block_reduce.cuh"
#include "ops/norm/norm_cuda.h"
#include "ops/quant/cuda_common.cuh"

namespace fp::cuda {
namespace {

// ---- kernels ------------------------------------------------------------------------

__global__ void rms_norm_rows(const float* x, const float* w, float* y, int64_t dim, float eps) {
  __shared__ double red[32];
  const float* xr = x + int64_t(blockIdx.x) * dim;
  float* yr = y + int64_t(blockIdx.x) * dim;
  double ss = 0;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) ss += double(xr[i]) * double(xr[i]);
  ss = dev::block_reduce_sum(ss, red);
  const float scale = 1.0f / sqrtf(float(ss / double(dim)) + eps);
  if (w) {
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * scale * w[i];
  } else {
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * scale;
  }
}

__global__ void add_kernel(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = a[i] + b[i];
}

}  // namespace

// ---- launchers ----------------------------------------------------------------------

void rms_norm(const float* x, const float* w, float* y, int64_t n, int64_t dim, float eps, Stream s) {
  if (!x || !y) fail("cuda rms_norm: null buffer");
  if (n <= 0 || dim <= 0) fail("cuda rms_norm: ", n, " rows of ", dim, ", expected positive sizes");
  rms_norm_rows<<<unsigned(n), dim >= 1024 ? 512 : 128, 0, s>>>(x, w, y, dim, eps);
  check_launch("rms_norm");
}

void add(const float* a, const float* b, float* y, int64_t n, Stream s) {
  if (n <= 0) return;
  const int64_t blocks = std::min<int64_t>((n + 255) / 256, 4096);
  add_kernel<<<unsigned(blocks), 256, 0, s>>>(a, b, y, n);
  check_launch("add");
}

}  // namespace fp::cuda
