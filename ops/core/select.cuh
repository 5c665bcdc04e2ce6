// Order-preserving integer keys for selection kernels (top-k, argmax, routing) and a
// block-wide exclusive scan. A key orders values as numbers do, with every NaN below
// every number (so NaN is never picked while a number is left) and -0 equal to +0; ties
// go to the lower index in every kernel that uses these keys. Device code only.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace fp::cuda::dev {

__device__ __forceinline__ uint64_t order_key(double v) {
  if (isnan(v)) return 0;
  if (v == 0.0) v = 0.0;  // -0 -> +0
  const uint64_t b = uint64_t(__double_as_longlong(v));
  return (b >> 63) ? ~b : (b | 0x8000000000000000ull);
}

__device__ __forceinline__ uint32_t order_key(float v) {
  if (isnan(v)) return 0;
  if (v == 0.0f) v = 0.0f;
  const uint32_t b = __float_as_uint(v);
  return (b >> 31) ? ~b : (b | 0x80000000u);
}

// Exclusive prefix sum over the block (blockDim.x a multiple of 32); *total gets the
// block's sum. `shared` holds at least 33 ints. Contains __syncthreads().
__device__ __forceinline__ int block_exclusive_scan(int v, int* shared, int* total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  int incl = v;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int u = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += u;
  }
  __syncthreads();
  if (lane == 31) shared[warp] = incl;
  __syncthreads();
  if (threadIdx.x == 0) {
    int acc = 0;
    for (int w = 0; w < nw; ++w) {
      const int x = shared[w];
      shared[w] = acc;
      acc += x;
    }
    shared[32] = acc;
  }
  __syncthreads();
  *total = shared[32];
  return shared[warp] + incl - v;
}

}  // namespace fp::cuda::dev
