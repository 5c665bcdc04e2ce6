// CUDA kernels of the norm family (see norm_cuda.h): one block per row for RMSNorm, a
// grid-stride loop for the add.
#include <algorithm>

#include "ops/core/block_reduce.cuh"
#include "ops/core/pdl.cuh"
#include "ops/norm/norm_cuda.h"
#include "ops/quant/cuda_common.cuh"

namespace fp::cuda {
namespace {

// ---- kernels ------------------------------------------------------------------------

// Rows of a multiple of 4 values (16-byte aligned, as every executor buffer is) are read
// as float4 with the loop unrolled, so a decode step's single row keeps several loads in
// flight per thread; other rows fall back to scalar loads.
template <bool kVec4>
__global__ void rms_norm_rows(const float* x, const float* w, float* y, int64_t dim, float eps) {
  __shared__ double red[32];
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const float* xr = x + int64_t(blockIdx.x) * dim;
  float* yr = y + int64_t(blockIdx.x) * dim;
  double ss = 0;
  if constexpr (kVec4) {
    const float4* x4 = reinterpret_cast<const float4*>(xr);
#pragma unroll 4
    for (int64_t i = threadIdx.x; i < dim / 4; i += blockDim.x) {
      const float4 v = x4[i];
      ss += double(v.x) * double(v.x) + double(v.y) * double(v.y) + double(v.z) * double(v.z) +
            double(v.w) * double(v.w);
    }
  } else {
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) ss += double(xr[i]) * double(xr[i]);
  }
  ss = dev::block_reduce_sum(ss, red);
  const float scale = 1.0f / sqrtf(float(ss / double(dim)) + eps);
  if constexpr (kVec4) {
    const float4* x4 = reinterpret_cast<const float4*>(xr);
    const float4* w4 = reinterpret_cast<const float4*>(w);
    float4* y4 = reinterpret_cast<float4*>(yr);
#pragma unroll 4
    for (int64_t i = threadIdx.x; i < dim / 4; i += blockDim.x) {
      float4 v = x4[i];
      v.x *= scale, v.y *= scale, v.z *= scale, v.w *= scale;
      if (w) {
        const float4 g = w4[i];
        v.x *= g.x, v.y *= g.y, v.z *= g.z, v.w *= g.w;
      }
      y4[i] = v;
    }
  } else if (w) {
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * scale * w[i];
  } else {
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * scale;
  }
}

__global__ void add_kernel(const float* a, const float* b, float* y, int64_t n) {
  dev::wait_prev_grid();
  dev::allow_next_grid();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = a[i] + b[i];
}

}  // namespace

// ---- launchers ----------------------------------------------------------------------

void rms_norm(const float* x, const float* w, float* y, int64_t n, int64_t dim, float eps, Launch l) {
  if (!x || !y) fail("cuda rms_norm: null buffer");
  if (n <= 0 || dim <= 0) fail("cuda rms_norm: ", n, " rows of ", dim, ", expected positive sizes");
  const auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  const bool vec4 = dim % 4 == 0 && aligned(x) && aligned(y) && (!w || aligned(w));
  const int threads = dim >= 2048 ? 256 : 128;
  launch_kernel(vec4 ? &rms_norm_rows<true> : &rms_norm_rows<false>, unsigned(n), threads, 0, l, "rms_norm", x, w, y,
                dim, eps);
}

void add(const float* a, const float* b, float* y, int64_t n, Launch l) {
  if (n <= 0) return;
  const int64_t blocks = std::min<int64_t>((n + 255) / 256, 4096);
  launch_kernel(&add_kernel, unsigned(blocks), 256, 0, l, "add", a, b, y, n);
}

}  // namespace fp::cuda
