// CUDA kernels of the indexer family (see indexer_cuda.h).
#include <cuda_runtime.h>

#include <cmath>

#include "ops/core/select.cuh"
#include "ops/indexer/indexer_cuda.h"
#include "ops/numerics/numerics.cuh"
#include "ops/quant/cuda_common.cuh"
#include "ops/rope/rope.cuh"

namespace fp::cuda {
namespace {

constexpr int kScoreWarps = 8;
constexpr int kRowsPerBlock = 64;
constexpr int kTopkThreads = 1024;

// ---- kernels ------------------------------------------------------------------------

// One block per (token, head).
__global__ void prep_kernel(IndexerArgs a, float wscale) {
  extern __shared__ float row[];
  const int64_t t = blockIdx.x / a.heads, h = blockIdx.x % a.heads;
  const int D = int(a.dim);
  float* q = a.q + (t * a.heads + h) * D;
  for (int i = threadIdx.x; i < D; i += blockDim.x) row[i] = q[i];
  __syncthreads();
  dev::rope_heads_block(row, 1, D, int(a.tab.n_rot), a.tab.inv_freq, *a.pos0 + t, false);
  __syncthreads();
  if (a.official) dev::indexer_qat_row(row, D);
  for (int i = threadIdx.x; i < D; i += blockDim.x) q[i] = row[i];
  if (threadIdx.x == 0) a.w[t * a.heads + h] *= wscale;
}

__device__ __forceinline__ int64_t visible_rows(const IndexerArgs& a, int64_t t) {
  const int64_t N = (*a.pos0 + t + 1) / a.ratio;
  return N < a.max_rows ? N : a.max_rows;
}

// grid (token, row block): a warp per row, heads in order, dot products in double.
__global__ void scores_kernel(IndexerArgs a) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t t = blockIdx.x;
  const int64_t N = visible_rows(a, t);
  if (N <= a.topk) return;
  const float* q = a.q + t * a.heads * a.dim;
  const float* w = a.w + t * a.heads;
  for (int64_t s = int64_t(blockIdx.y) * kRowsPerBlock + warp; s < min(N, int64_t(blockIdx.y + 1) * kRowsPerBlock);
       s += kScoreWarps) {
    const float* k = a.keys + s * a.dim;
    double total = 0;
    for (int64_t h = 0; h < a.heads; ++h) {
      const float* qh = q + h * a.dim;
      double dot = 0;
      for (int64_t i = lane; i < a.dim; i += 32) dot += double(qh[i]) * double(k[i]);
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
      if (dot > 0) total += double(w[h]) * dot;
    }
    if (lane == 0) a.scores[t * a.max_rows + s] = total;
  }
}

// Radix select of the k largest of row[0..N), written ascending to out; one block.
__device__ void block_topk(const double* row, int64_t N, int64_t k, int32_t* out) {
  __shared__ unsigned hist[256];
  __shared__ uint64_t prefix_s;
  __shared__ int need_s;
  __shared__ int scan[33];
  __shared__ int eq_base, out_base;
  uint64_t prefix = 0, mask = 0;
  int need = int(k);
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
      const uint64_t key = dev::order_key(row[i]);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int cum = 0;
      for (int b = 255; b >= 0; --b) {
        if (cum + int(hist[b]) >= need) {
          prefix_s = prefix | (uint64_t(b) << shift);
          need_s = need - cum;
          break;
        }
        cum += int(hist[b]);
      }
    }
    __syncthreads();
    prefix = prefix_s;
    need = need_s;
    mask |= uint64_t(0xff) << shift;
  }
  // prefix is the k-th largest key: take every larger key and the first `need` equal
  // ones, in row order.
  if (threadIdx.x == 0) eq_base = out_base = 0;
  __syncthreads();
  for (int64_t base = 0; base < N; base += blockDim.x) {
    const int64_t i = base + threadIdx.x;
    uint64_t key = 0;
    bool gt = false, eq = false;
    if (i < N) {
      key = dev::order_key(row[i]);
      gt = key > prefix;
      eq = key == prefix;
    }
    int eq_total = 0, take_total = 0;
    const int eq_rank = eq_base + dev::block_exclusive_scan(eq ? 1 : 0, scan, &eq_total);
    const bool take = gt || (eq && eq_rank < need);
    const int pos = out_base + dev::block_exclusive_scan(take ? 1 : 0, scan, &take_total);
    if (take && pos < k) out[pos] = int32_t(i);
    __syncthreads();
    if (threadIdx.x == 0) {
      eq_base += eq_total;
      out_base += take_total;
    }
    __syncthreads();
  }
}

__global__ void topk_kernel(IndexerArgs a) {
  const int64_t t = blockIdx.x;
  const int64_t N = visible_rows(a, t);
  if (N <= a.topk) {
    if (threadIdx.x == 0) a.nsel[t] = -1;
    return;
  }
  block_topk(a.scores + t * a.max_rows, N, a.topk, a.sel + t * a.topk);
  if (threadIdx.x == 0) a.nsel[t] = int32_t(a.topk);
}

__global__ void topk_rows_kernel(const double* scores, int64_t ld, int64_t count, int64_t k, int32_t* sel,
                                 int32_t* nsel) {
  const int64_t t = blockIdx.x;
  if (count <= k) {
    if (threadIdx.x == 0) nsel[t] = -1;
    return;
  }
  block_topk(scores + t * ld, count, k, sel + t * k);
  if (threadIdx.x == 0) nsel[t] = int32_t(k);
}

}  // namespace

// ---- launchers ----------------------------------------------------------------------

void indexer_topk(const IndexerArgs& a, Stream s) {
  const char* what = "cuda indexer_topk";
  if (!a.q || !a.w || !a.keys || !a.pos0 || !a.scores || !a.sel || !a.nsel || !a.tab.inv_freq) fail(what, ": null buffer");
  if (a.n <= 0 || a.heads <= 0 || a.dim <= 0 || a.ratio <= 0 || a.topk <= 0 || a.max_rows <= 0)
    fail(what, ": bad sizes");
  if (a.official && (a.dim & (a.dim - 1))) fail(what, ": dim ", a.dim, ", expected a power of two for the Hadamard");
  const float wscale = float(1.0 / std::sqrt(double(a.dim) * double(a.heads)));
  prep_kernel<<<unsigned(a.n * a.heads), 128, size_t(a.dim) * sizeof(float), s>>>(a, wscale);
  check_launch("indexer prep");
  const dim3 grid(unsigned(a.n), unsigned((a.max_rows + kRowsPerBlock - 1) / kRowsPerBlock));
  scores_kernel<<<grid, 32 * kScoreWarps, 0, s>>>(a);
  check_launch("indexer scores");
  topk_kernel<<<unsigned(a.n), kTopkThreads, 0, s>>>(a);
  check_launch("indexer topk");
}

void topk_rows(const double* scores, int64_t ld, int64_t n, int64_t count, int64_t k, int32_t* sel, int32_t* nsel,
               Stream s) {
  if (!scores || !sel || !nsel || n <= 0 || k <= 0 || count < 0 || ld < count) fail("cuda topk_rows: bad arguments");
  topk_rows_kernel<<<unsigned(n), kTopkThreads, 0, s>>>(scores, ld, count, k, sel, nsel);
  check_launch("topk_rows");
}

}  // namespace fp::cuda
