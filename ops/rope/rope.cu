// CUDA kernels of the rope family (see rope_cuda.h): one block per (token, head) for the
// fused head norm + rotation, one thread per rotated pair for plain rotations.
#include "ops/core/block_reduce.cuh"
#include "ops/core/pdl.cuh"
#include "ops/quant/cuda_common.cuh"
#include "ops/rope/rope.cuh"
#include "ops/rope/rope_cuda.h"

namespace fp::cuda {
namespace {

// ---- kernels ------------------------------------------------------------------------
// Each opens with the PDL wait (ops/core/pdl.cuh): positions and x come from earlier work.

// Block (pair group, token): one thread per rotated pair of the token's heads, so a
// decode step's 64 heads spread over several blocks.
constexpr int kRopeThreads = 128;

__global__ void rope_tokens(RopeArgs a, bool inverse) {
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const int64_t t = blockIdx.y;
  const int half = int(a.tab.n_rot / 2);
  const int i = blockIdx.x * kRopeThreads + threadIdx.x;
  if (i >= a.heads * half) return;
  const int h = i / half, k = i % half;
  dev::rope_pair(a.x + t * a.ld + int64_t(h) * a.head_dim + (a.head_dim - a.tab.n_rot), k, a.tab.inv_freq, *a.pos0 + t,
                 inverse);
}

// One block per (token, head): RMSNorm of the head (no weight), then its tail rotation.
__global__ void head_norm_rope(RopeArgs a) {
  __shared__ double red[32];
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const int64_t t = blockIdx.x / a.heads, h = blockIdx.x % a.heads;
  float* x = a.x + t * a.ld + h * a.head_dim;
  const int D = int(a.head_dim);
  double ss = 0;
  for (int i = threadIdx.x; i < D; i += blockDim.x) ss += double(x[i]) * double(x[i]);
  ss = dev::block_reduce_sum(ss, red);
  const float scale = 1.0f / sqrtf(float(ss / double(D)) + a.eps);
  for (int i = threadIdx.x; i < D; i += blockDim.x) x[i] = x[i] * scale;
  __syncthreads();
  dev::rope_heads_block(x, 1, D, int(a.tab.n_rot), a.tab.inv_freq, *a.pos0 + t, false);
}

}  // namespace

// ---- launcher -----------------------------------------------------------------------

void rope(const RopeArgs& a0, Launch l) {
  RopeArgs a = a0;
  if (a.ld == 0) a.ld = a.heads * a.head_dim;
  if (!a.x || !a.pos0 || !a.tab.inv_freq) fail("cuda rope: null buffer");
  if (a.n <= 0 || a.heads <= 0 || a.head_dim <= 0) fail("cuda rope: shape [", a.n, ", ", a.heads, ", ", a.head_dim, "]");
  if (a.tab.n_rot <= 0 || a.tab.n_rot % 2 || a.tab.n_rot > a.head_dim)
    fail("cuda rope: n_rot ", a.tab.n_rot, ", expected an even number <= head_dim ", a.head_dim);
  if (a.op == RopeOp::head_norm_rotate) {
    launch_kernel(&head_norm_rope, unsigned(a.n * a.heads), 128, 0, l, "rope", a);
  } else {
    const int64_t pairs = a.heads * (a.tab.n_rot / 2);
    const dim3 grid(unsigned((pairs + kRopeThreads - 1) / kRopeThreads), unsigned(a.n));
    launch_kernel(&rope_tokens, grid, kRopeThreads, 0, l, "rope", a, a.op == RopeOp::inverse);
  }
}

}  // namespace fp::cuda
