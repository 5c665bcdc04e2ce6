// Block-wide reductions for the op families' CUDA kernels (device code only). Every
// reduction runs in a fixed order for a given block size, so a kernel's result does not
// change from run to run (graph replays and eager runs agree bit for bit).
#pragma once
#include <cuda_runtime.h>

namespace fp::cuda::dev {

template <typename T>
__device__ __forceinline__ T warp_reduce_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// fmaxf over the warp: a NaN lane is ignored unless every lane is NaN (fmaxf's rule).
__device__ __forceinline__ float warp_reduce_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024). `shared` holds
// at least 32 values. Every thread gets the result. Contains __syncthreads().
template <typename T>
__device__ __forceinline__ T block_reduce_sum(T v, T* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_reduce_sum(v);
  __syncthreads();  // shared may still be read by an earlier reduction
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  T r = lane < nw ? shared[lane] : T(0);
  return warp_reduce_sum(r);
}

}  // namespace fp::cuda::dev
