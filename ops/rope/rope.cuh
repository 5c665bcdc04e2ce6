// Device side of RoPE (rope.h): the rotation of one (2k, 2k+1) pair of a head's tail at
// an exact position, in double like the CPU reference (angles from exact positions, so
// position 1M rotates as accurately as position 0).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

namespace fp::cuda::dev {

// t: the head's tail (n_rot values); pair k; inv_freq: the table (n_rot/2 doubles).
__device__ __forceinline__ void rope_pair(float* t, int k, const double* inv_freq, int64_t pos, bool inverse) {
  double s, c;
  sincos(double(pos) * inv_freq[k], &s, &c);
  if (inverse) s = -s;
  const double a = t[2 * k], b = t[2 * k + 1];
  t[2 * k] = float(a * c - b * s);
  t[2 * k + 1] = float(a * s + b * c);
}

// Every pair of `heads` heads of head_dim values at x, threads of the block striding.
__device__ __forceinline__ void rope_heads_block(float* x, int heads, int head_dim, int n_rot, const double* inv_freq,
                                                 int64_t pos, bool inverse) {
  const int half = n_rot / 2;
  for (int i = threadIdx.x; i < heads * half; i += blockDim.x) {
    const int h = i / half, k = i % half;
    rope_pair(x + int64_t(h) * head_dim + (head_dim - n_rot), k, inv_freq, pos, inverse);
  }
}

}  // namespace fp::cuda::dev
