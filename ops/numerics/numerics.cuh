// Device versions of the numerics round trips (numerics.h): FP8 E4M3FN and FP4 E2M1
// rounding with power-of-two block scales, F16 rounding and the Sylvester Hadamard
// rotation. Same formulas and the same float operations as the CPU reference, so a row
// comes out bit-identical (block scales use log2f like the CPU; the two libraries agree
// except within a few ulps above an exact power of two).
//
// The row helpers are cooperative: every thread of the block (a multiple of 32 threads)
// calls them with the same row; the caller puts a __syncthreads() between a helper and the
// next reader. Rows may live in shared or global memory.
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

// One scale block of len <= 64 values by one warp: lane l holds x[l] and x[l + 32]. The
// block's amax is a max (exact in any order, NaN ignored as fmaxf does on the CPU), and
// every value then rounds with the CPU's operations, so the row is bit-identical to the
// CPU's sequential loop. Every lane of the warp must call it.
__device__ __forceinline__ void minifloat_block_warp(float* x, int len, float max_code, float floor, bool fp8) {
  const int lane = threadIdx.x & 31;
  float v[2];
  float amax = 0.0f;
#pragma unroll
  for (int u = 0; u < 2; ++u) {
    const int i = lane + 32 * u;
    v[u] = i < len ? x[i] : 0.0f;
    amax = fmaxf(amax, fabsf(v[u]));
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  if (amax < floor) amax = floor;
  const float scale = block_scale(amax, max_code);
#pragma unroll
  for (int u = 0; u < 2; ++u) {
    const int i = lane + 32 * u;
    if (i >= len) continue;
    float r = v[u] / scale;
    r = fminf(fmaxf(r, -max_code), max_code);
    x[i] = (fp8 ? fp8_e4m3_round(r) : fp4_e2m1_round(r)) * scale;
  }
}

// x[0..n) in scale blocks of `block` (<= 64) values, a warp per block (blockDim.x a
// multiple of 32). A thread per block walking its values one by one (the CPU's loop)
// was measured at 17.8 us for a 448-value row on an H100: a chain of global loads.
__device__ __forceinline__ void minifloat_row(float* x, int n, int block, float max_code, float floor, bool fp8) {
  const int warps = int(blockDim.x) / 32, warp = int(threadIdx.x) / 32;
  const int nb = (n + block - 1) / block;
  for (int b = warp; b < nb; b += warps) {
    const int off = b * block;
    minifloat_block_warp(x + off, min(block, n - off), max_code, floor, fp8);
  }
}

// FP8 round trip of x[0..n_nope) in blocks of 64.
__device__ __forceinline__ void fp8_kv_round_trip_row(float* x, int n_nope) {
  static_assert(ref::kFp8KvBlock <= 64, "minifloat_block_warp holds 64 values per warp");
  minifloat_row(x, n_nope, int(ref::kFp8KvBlock), ref::kFp8E4M3Max, ref::kFp8AmaxFloor, true);
}

// FP4 round trip of x[0..n) in blocks of 32.
__device__ __forceinline__ void fp4_round_trip_row(float* x, int n) {
  static_assert(ref::kFp4Block <= 64, "minifloat_block_warp holds 64 values per warp");
  minifloat_row(x, n, int(ref::kFp4Block), ref::kFp4E2M1Max, ref::kFp4AmaxFloor, false);
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
