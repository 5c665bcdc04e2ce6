// CUDA kernels of the indexer family (see indexer_cuda.h).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "ops/core/pdl.cuh"
#include "ops/core/smem_opt_in.cuh"
#include "ops/core/select.cuh"
#include "ops/indexer/indexer_cuda.h"
#include "ops/numerics/numerics.cuh"
#include "ops/quant/cuda_common.cuh"
#include "ops/rope/rope.cuh"

namespace fp::cuda {
namespace {

constexpr int kScoreWarps = 8;
constexpr int kTopkThreads = 1024;

// ---- kernels ------------------------------------------------------------------------
// Each opens with the PDL wait (ops/core/pdl.cuh): queries, weights, keys and scores come
// from earlier kernels.

// One block per (token, head).
__global__ void prep_kernel(IndexerArgs a, float wscale) {
  extern __shared__ float row[];
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const int64_t t = blockIdx.x / a.heads, h = blockIdx.x % a.heads;
  const int D = int(a.dim);
  float* q = a.q + (t * a.heads + h) * D;
  for (int i = threadIdx.x; i < D; i += blockDim.x) row[i] = q[i];
  __syncthreads();
  dev::rope_heads_block(row, 1, D, int(a.tab.n_rot), a.tab.inv_freq, *a.pos0 + a.t0 + t, false);
  __syncthreads();
  if (a.official) dev::indexer_qat_row(row, D);
  for (int i = threadIdx.x; i < D; i += blockDim.x) q[i] = row[i];
  if (threadIdx.x == 0) a.w[t * a.heads + h] *= wscale;
}

__device__ __forceinline__ int64_t visible_rows(const IndexerArgs& a, int64_t t) {
  const int64_t N = (*a.pos0 + a.t0 + t + 1) / a.ratio;
  return N < a.max_rows ? N : a.max_rows;
}

// grid (token, blocks of the token): the token's queries staged in shared memory (rows padded by
// one float so lanes reading different heads hit different banks); a warp per row, a
// lane per head (heads lane, lane + 32, ...), each head's dot in double over the dims in
// order, then Σ_h w[h]·max(0, dot_h) in head order on lane 0.
constexpr int kMaxHeadsPerLane = 4;  // heads <= 128

__global__ void scores_kernel(IndexerArgs a) {
  extern __shared__ float q_s[];  // [heads][dim + 1]
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t t = blockIdx.x;
  const int64_t N = visible_rows(a, t);
  if (N <= a.topk || int64_t(blockIdx.y) * kScoreWarps >= N) return;
  const int H = int(a.heads), D = int(a.dim), ld = D + 1;
  const float* q = a.q + t * a.heads * a.dim;
  for (int i = threadIdx.x; i < H * D; i += blockDim.x) q_s[(i / D) * ld + i % D] = q[i];
  __syncthreads();
  const float* w = a.w + t * a.heads;
  // A warp per row: the token's blocks' warps take the visible rows in turn.
  for (int64_t s = int64_t(blockIdx.y) * kScoreWarps + warp; s < N; s += int64_t(gridDim.y) * kScoreWarps) {
    const float* k = a.keys + s * a.dim;
    double dot[kMaxHeadsPerLane] = {};
    for (int i = 0; i < D; ++i) {
      const double kv = k[i];  // the same address on every lane: one broadcast load
#pragma unroll
      for (int j = 0; j < kMaxHeadsPerLane; ++j) {
        const int h = lane + 32 * j;
        if (h < H) dot[j] += double(q_s[h * ld + i]) * kv;
      }
    }
    double total = 0;
    for (int h = 0; h < H; ++h) {
      double d = dot[0];
#pragma unroll
      for (int j = 1; j < kMaxHeadsPerLane; ++j)
        if (h / 32 == j) d = dot[j];
      d = __shfl_sync(0xffffffffu, d, h % 32);
      if (d > 0) total += double(w[h]) * d;
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
    if (threadIdx.x < 32) {
      // The bin holding the need-th largest key, scanning bins from 255 down: lane l
      // owns bins 255-8l .. 248-8l; a warp scan gives the count above each lane's bins.
      const int lane = threadIdx.x, top = 255 - 8 * lane;
      int own = 0;
      for (int b = 0; b < 8; ++b) own += int(hist[top - b]);
      int incl = own;
      for (int o = 1; o < 32; o <<= 1) {
        const int v = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += v;
      }
      const int above = incl - own;
      const unsigned hit = __ballot_sync(0xffffffffu, above < need && incl >= need);
      if (hit && lane == __ffs(hit) - 1) {
        int cum = above;
        for (int b = top; b > top - 8; --b) {
          if (cum + int(hist[b]) >= need) {
            prefix_s = prefix | (uint64_t(b) << shift);
            need_s = need - cum;
            break;
          }
          cum += int(hist[b]);
        }
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
  dev::wait_prev_grid();
  dev::allow_next_grid();
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
  dev::wait_prev_grid();
  dev::allow_next_grid();
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

void indexer_topk(const IndexerArgs& a, Launch l) {
  const char* what = "cuda indexer_topk";
  if (!a.q || !a.w || !a.keys || !a.pos0 || !a.scores || !a.sel || !a.nsel || !a.tab.inv_freq) fail(what, ": null buffer");
  if (a.n <= 0 || a.heads <= 0 || a.dim <= 0 || a.ratio <= 0 || a.topk <= 0 || a.max_rows <= 0)
    fail(what, ": bad sizes");
  if (a.official && (a.dim & (a.dim - 1))) fail(what, ": dim ", a.dim, ", expected a power of two for the Hadamard");
  const float wscale = float(1.0 / std::sqrt(double(a.dim) * double(a.heads)));
  launch_kernel(&prep_kernel, unsigned(a.n * a.heads), 128, size_t(a.dim) * sizeof(float), l, "indexer prep", a, wscale);
  if (a.heads > 32 * kMaxHeadsPerLane) fail(what, ": ", a.heads, " heads, at most ", 32 * kMaxHeadsPerLane);
  const size_t q_bytes = size_t(a.heads) * size_t(a.dim + 1) * sizeof(float);
  if (q_bytes > 48 * 1024) {
    if (q_bytes > 200 * 1024) fail(what, ": ", a.heads, " heads of ", a.dim, " do not fit in shared memory");
    opt_in_smem(reinterpret_cast<const void*>(&scores_kernel), q_bytes, "indexer scores");
  }
  // Blocks per token: enough to fill the device, each looping over its share of the
  // visible rows (a graph replays the step at any position, so the grid cannot follow
  // them). A block per 64 rows of max_rows (1024 a token at a 256k context) was ~2 M mostly
  // empty blocks for a 2048-token prefill step: ~4.7 ms a CSA layer on an H100 (call 5).
  const int64_t useful = (a.max_rows + kScoreWarps - 1) / kScoreWarps;  // blocks with a row each
  const int64_t fill = (int64_t(sm_count()) * 8 + a.n - 1) / a.n;
  const dim3 grid(unsigned(a.n), unsigned(std::clamp<int64_t>(fill, 1, useful)));
  launch_kernel(&scores_kernel, grid, 32 * kScoreWarps, q_bytes, l, "indexer scores", a);
  launch_kernel(&topk_kernel, unsigned(a.n), kTopkThreads, 0, l, "indexer topk", a);
}

void topk_rows(const double* scores, int64_t ld, int64_t n, int64_t count, int64_t k, int32_t* sel, int32_t* nsel,
               Launch l) {
  if (!scores || !sel || !nsel || n <= 0 || k <= 0 || count < 0 || ld < count) fail("cuda topk_rows: bad arguments");
  launch_kernel(&topk_rows_kernel, unsigned(n), kTopkThreads, 0, l, "topk_rows", scores, ld, count, k, sel, nsel);
}

}  // namespace fp::cuda
