// Device versions of the numerics round trips (numerics.h): FP8 E4M3FN and FP4 E2M1
// rounding with power-of-two block scales, F16 rounding and the Sylvester Hadamard
// rotation. Same formulas and the same float operations as the CPU reference, so a row
// comes out bit-identical (block scales use log2f like the CPU; the two libraries agree
// except within a few ulps above an exact power of two).
//
// The row helpers are cooperative: every thread of the block calls them with the same
// row; the caller puts a __syncthreads() between a helper and the next reader. Rows may
// live in shared or global memory.
#pragma once
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "ops/numerics/numerics.h"

namespace fp::cuda::dev {

__device__ __forceinline__ float round_to_minifloat(float ax, int mant_bits, int min_exp) {
  int e = 0;
  frexpf(ax, &e);
  int binade = e - 1;
  if (binade < min_exp) binade = min_exp;
  const float step = ldexpf(1.0f, binade - mant_bits);
  return rintf(ax / step) * step;
}

__device__ __forceinline__ float fp8_e4m3_round(float x) {
  if (isnan(x)) return x;
  const float ax = fminf(fabsf(x), ref::kFp8E4M3Max);
  const float r = fminf(round_to_minifloat(ax, 3, -6), ref::kFp8E4M3Max);
  return signbit(x) ? -r : r;
}

__device__ __forceinline__ float fp4_e2m1_round(float x) {
  if (isnan(x)) return x;
  const float ax = fminf(fabsf(x), ref::kFp4E2M1Max);
  const float r = fminf(round_to_minifloat(ax, 1, 0), ref::kFp4E2M1Max);
  return signbit(x) ? -r : r;
}

__device__ __forceinline__ float block_scale(float amax, float max_code) {
  return ldexpf(1.0f, int(ceilf(log2f(amax / max_code))));
}

__device__ __forceinline__ float f16_round(float x) { return __half2float(__float2half_rn(x)); }

// One scale block of `len` values, sequentially (as the CPU does it).
__device__ __forceinline__ void minifloat_block(float* x, int len, float max_code, float floor, bool fp8) {
  float amax = 0.0f;
  for (int i = 0; i < len; ++i) amax = fmaxf(amax, fabsf(x[i]));
  if (amax < floor) amax = floor;
  const float scale = block_scale(amax, max_code);
  for (int i = 0; i < len; ++i) {
    float v = x[i] / scale;
    v = fminf(fmaxf(v, -max_code), max_code);
    x[i] = (fp8 ? fp8_e4m3_round(v) : fp4_e2m1_round(v)) * scale;
  }
}

// FP8 round trip of x[0..n_nope) in blocks of 64; one thread per block.
__device__ __forceinline__ void fp8_kv_round_trip_row(float* x, int n_nope) {
  const int nb = (n_nope + int(ref::kFp8KvBlock) - 1) / int(ref::kFp8KvBlock);
  for (int b = threadIdx.x; b < nb; b += blockDim.x) {
    const int off = b * int(ref::kFp8KvBlock);
    const int len = min(int(ref::kFp8KvBlock), n_nope - off);
    minifloat_block(x + off, len, ref::kFp8E4M3Max, ref::kFp8AmaxFloor, true);
  }
}

// FP4 round trip of x[0..n) in blocks of 32; one thread per block.
__device__ __forceinline__ void fp4_round_trip_row(float* x, int n) {
  const int nb = (n + int(ref::kFp4Block) - 1) / int(ref::kFp4Block);
  for (int b = threadIdx.x; b < nb; b += blockDim.x) {
    const int off = b * int(ref::kFp4Block);
    const int len = min(int(ref::kFp4Block), n - off);
    minifloat_block(x + off, len, ref::kFp4E2M1Max, ref::kFp4AmaxFloor, false);
  }
}

__device__ __forceinline__ void f16_round_row(float* x, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) x[i] = f16_round(x[i]);
}

// In-place Sylvester Hadamard transform scaled by 1/sqrt(n) (n a power of two), the
// CPU's butterfly order. Contains __syncthreads(): every thread of the block must call.
__device__ __forceinline__ void hadamard_row(float* x, int n) {
  __syncthreads();
  for (int h = 1; h < n; h *= 2) {
    for (int q = threadIdx.x; q < n / 2; q += blockDim.x) {
      const int j = (q / h) * 2 * h + q % h;
      const float a = x[j], b = x[j + h];
      x[j] = a + b;
      x[j + h] = a - b;
    }
    __syncthreads();
  }
  const float s = float(1.0 / sqrt(double(n)));
  for (int i = threadIdx.x; i < n; i += blockDim.x) x[i] *= s;
  __syncthreads();
}

// The indexer's QAT round trip of one row: Hadamard then FP4 (ends synchronised).
__device__ __forceinline__ void indexer_qat_row(float* x, int n) {
  hadamard_row(x, n);
  fp4_round_trip_row(x, n);
  __syncthreads();
}

}  // namespace fp::cuda::dev
