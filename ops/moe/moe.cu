// CUDA kernels of the MoE family (see moe_cuda.h).
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "ops/core/pdl.cuh"
#include "ops/core/select.cuh"
#include "ops/hc/hc_cuda.h"
#include "ops/moe/moe_cuda.h"
#include "ops/quant/cuda_common.cuh"

namespace fp::cuda {
namespace {

constexpr int kRouterThreads = 256, kRouterWarps = kRouterThreads / 32;
static_assert(kRouterWarps <= 32, "warp 0 reduces one best per warp");

// Keeps in (bk, bi) the warp's best (key desc, id asc; bi < 0 = none), on every lane.
__device__ __forceinline__ void arg_best_warp(uint32_t& bk, int32_t& bi) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const uint32_t ok = __shfl_xor_sync(0xffffffffu, bk, o);
    const int32_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (oi >= 0 && (bi < 0 || ok > bk || (ok == bk && oi < bi))) {
      bk = ok;
      bi = oi;
    }
  }
}

// ---- kernels ------------------------------------------------------------------------
// Each opens with the PDL wait (ops/core/pdl.cuh): logits, u, ids and the slot outputs
// come from earlier kernels.

// One block per token. Shared: chosen flags [n_expert].
__global__ void router_kernel(RouterArgs a) {
  extern __shared__ uint8_t chosen[];
  __shared__ uint32_t best_key[kRouterWarps];
  __shared__ int32_t best_id[kRouterWarps];
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const int64_t t = blockIdx.x, NE = a.n_expert, K = a.k;
  float* s = a.logits + t * NE;
  for (int64_t e = threadIdx.x; e < NE; e += blockDim.x) {
    const double z = s[e];
    const double sp = z > 20 ? z : (z < -20 ? exp(z) : log1p(exp(z)));
    s[e] = float(sqrt(sp));
    chosen[e] = 0;
  }
  __syncthreads();
  int32_t* ids = a.ids + t * K;
  if (a.tid2eid) {
    if (threadIdx.x == 0) {
      int64_t tok = a.tokens[t];
      if (tok < 0 || tok >= a.n_vocab) {
        if (a.err) atomicOr(a.err, kErrTokenRange);
        tok = 0;
      }
      for (int64_t i = 0; i < K; ++i) {
        const int32_t e = a.tid2eid[tok * K + i];
        ids[i] = e < 0 ? 0 : (e >= NE ? int32_t(NE - 1) : e);
      }
    }
  } else {
    for (int64_t i = 0; i < K; ++i) {
      // Best unchosen (key desc, id asc) of this thread's experts, then over the block.
      uint32_t bk = 0;
      int32_t bi = -1;
      for (int64_t e = threadIdx.x; e < NE; e += blockDim.x) {
        if (chosen[e]) continue;
        const uint32_t key = dev::order_key(s[e] + (a.bias ? a.bias[e] : 0.0f));
        if (bi < 0 || key > bk) {
          bk = key;
          bi = int32_t(e);
        }
      }
      // (key desc, id asc) is a total order with "none" (-1) last, so the block's best
      // is the same whatever order the reductions compare in: shuffles within each
      // warp, then warp 0 over the warps' bests (two barriers a round, not eight).
      arg_best_warp(bk, bi);
      const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
      if (lane == 0) {
        best_key[warp] = bk;
        best_id[warp] = bi;
      }
      __syncthreads();
      if (warp == 0) {
        bk = lane < kRouterWarps ? best_key[lane] : 0u;
        bi = lane < kRouterWarps ? best_id[lane] : -1;
        arg_best_warp(bk, bi);
        if (lane == 0) {
          ids[i] = bi;
          chosen[bi] = 1;
        }
      }
      __syncthreads();
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float sum = 0;
    for (int64_t i = 0; i < K; ++i) sum += s[ids[i]];
    const float div = a.normalise ? (sum < ref::kRouteWeightSumFloor ? ref::kRouteWeightSumFloor : sum) : 1.0f;
    for (int64_t i = 0; i < K; ++i) a.weights[t * K + i] = s[ids[i]] / div * a.scale;
  }
}

__global__ void swiglu_kernel(const float* gate, const float* up, int64_t n, float limit, float* out) {
  dev::wait_prev_grid();
  dev::allow_next_grid();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float g = gate[i], u = up[i];
    if (limit > 0) {  // std::min / std::clamp semantics: a NaN stays NaN
      g = limit < g ? limit : g;
      u = u < -limit ? -limit : (limit < u ? limit : u);
    }
    out[i] = float(double(g) / (1.0 + exp(-double(g)))) * u;
  }
}

// xs[q] = u[q / k] for every (token, slot) q.
__global__ void gather_kernel(const float* u, int64_t k, int64_t dim, float* xs) {
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const int64_t q = blockIdx.x;
  for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) xs[q * dim + d] = u[(q / k) * dim + d];
}

// out[t][d] = Σ_i w[t][i]·ys[t*k + i][d], slots in order. Block (256 dims, token).
__global__ void combine_kernel(const float* ys, const float* w, int64_t k, int64_t dim, float* out) {
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const int64_t t = blockIdx.y, d = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (d >= dim) return;
  float o = 0.0f;
  for (int64_t i = 0; i < k; ++i) o += w[t * k + i] * ys[(t * k + i) * dim + d];
  out[t * dim + d] = o;
}

// Multi-GPU: ids of this device's experts [first, first + count) made local, others -1.
__global__ void local_ids_kernel(const int32_t* ids, int64_t q, int64_t first, int64_t count, int32_t* out) {
  dev::wait_prev_grid();
  dev::allow_next_grid();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < q; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t e = int64_t(ids[i]) - first;
    out[i] = e >= 0 && e < count ? int32_t(e) : -1;
  }
}

// slots[q][:] = 0 where slot q's expert lies outside [first, first + count). Block (256 dims, slot).
__global__ void clear_foreign_kernel(const int32_t* ids, int64_t first, int64_t count, int64_t dim, float* slots) {
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const int64_t q = blockIdx.y, d = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t e = int64_t(ids[q]) - first;
  if (d < dim && !(e >= 0 && e < count)) slots[q * dim + d] = 0.0f;
}

unsigned grid_1d(int64_t n) { return unsigned(std::min<int64_t>((n + 255) / 256, 4096)); }

}  // namespace

// ---- launchers ----------------------------------------------------------------------

void router(const RouterArgs& a, Launch l) {
  const char* what = "cuda router";
  if (!a.logits || !a.ids || !a.weights) fail(what, ": null buffer");
  if (a.n <= 0 || a.n_expert <= 0 || a.k <= 0 || a.k > a.n_expert)
    fail(what, ": ", a.k, " of ", a.n_expert, " experts for ", a.n, " tokens");
  if (a.tid2eid && (!a.tokens || a.n_vocab <= 0)) fail(what, ": hash routing without tokens");
  if (a.n_expert > 48 * 1024) fail(what, ": ", a.n_expert, " experts, at most 49152 supported");
  launch_kernel(&router_kernel, unsigned(a.n), kRouterThreads, size_t(a.n_expert), l, "router", a);
}

void swiglu(const float* gate, const float* up, int64_t n, float limit, float* out, Launch l) {
  if (n <= 0) return;
  launch_kernel(&swiglu_kernel, grid_1d(n), 256, 0, l, "swiglu", gate, up, n, limit, out);
}

// Every launch of the node (gather, activation quantisers, expert matvecs, swiglu, combine)
// goes as l says: with PDL each waits for the one before it.
void moe(const MoeArgs& a, const LinearWorkspace& ws, Launch l) {
  const int64_t min_tokens = a.grouped_min_tokens > 0 ? a.grouped_min_tokens : kMoeGroupedMinTokens;
  if (a.grouped_work && a.n >= min_tokens && !ws.exact && moe_grouped_unsupported(a.gate, a.up, a.down).empty())
    return moe_grouped(a, l);
  const int64_t dim = a.gate.cols, ff = a.gate.rows, q = a.n * a.k;
  if (a.up.rows != ff || a.up.cols != dim || a.down.rows != dim || a.down.cols != ff)
    fail(a.down.name, ": expert shapes do not agree with ", a.gate.name);
  if (a.gate.experts != a.up.experts || a.gate.experts != a.down.experts)
    fail(a.gate.name, ": expert counts differ between gate, up and down");
  if (!a.u || !a.ids || !a.weights || !a.out || !a.work || q <= 0) fail("cuda moe: null buffer or no tokens");
  float* xs = a.work;
  float* g = xs + q * dim;
  float* up = g + q * ff;
  float* mid = up + q * ff;
  float* ys = a.slots ? a.slots : mid + q * ff;
  // Multi-GPU: other devices' slots read nothing (NaN outputs, cleared after the down product).
  const int32_t* ids = a.slots ? moe_local_ids(a, l) : a.ids;
  const float* x = a.u;
  int64_t stride = 0;
  if (a.n > 1) {
    launch_kernel(&gather_kernel, unsigned(q), 256, 0, l, "moe gather", a.u, a.k, dim, xs);
    x = xs;
    stride = dim;
  }
  // Gate and up in one launch where they share a type (DS4: IQ2_XXS): measured on an
  // H100 (bench-kernels, 2026-12-07) 24.7 us for the x6 pair against 2 x 15.0 us.
  if (a.gate.type == a.up.type) {
    expert_linear_pair(a.gate, a.up, ids, q, x, stride, g, up, ws, l);
  } else {
    expert_linear(a.gate, ids, q, x, stride, g, ws, l);
    expert_linear(a.up, ids, q, x, stride, up, ws, l);
  }
  swiglu(g, up, q * ff, a.limit, mid, l);
  expert_linear(a.down, ids, q, mid, ff, ys, ws, l);
  if (a.slots) return moe_clear_foreign_slots(a, l);
  launch_kernel(&combine_kernel, dim3(unsigned((dim + 255) / 256), unsigned(a.n)), 256, 0, l, "moe combine", ys,
                a.weights, a.k, dim, a.out);
}

// ---- multi-GPU (expert_split) -------------------------------------------------------

const int32_t* moe_local_ids(const MoeArgs& a, Launch l) {
  const int64_t q = a.n * a.k;
  if (!a.local_ids || !a.ids) fail("cuda moe: expert_split without a local id workspace");
  launch_kernel(&local_ids_kernel, grid_1d(q), 256, 0, l, "moe local ids", a.ids, q, a.expert_first, a.gate.experts,
                a.local_ids);
  return a.local_ids;
}

void moe_clear_foreign_slots(const MoeArgs& a, Launch l) {
  const int64_t dim = a.down.rows;
  launch_kernel(&clear_foreign_kernel, dim3(unsigned((dim + 255) / 256), unsigned(a.n * a.k)), 256, 0, l,
                "moe clear foreign slots", a.ids, a.expert_first, a.gate.experts, dim, a.slots);
}

void moe_combine(const float* slots, const float* weights, int64_t n, int64_t k, int64_t dim, float* out, Launch l) {
  if (!slots || !weights || !out || n <= 0 || k <= 0 || dim <= 0) fail("cuda moe combine: null buffer or empty shape");
  launch_kernel(&combine_kernel, dim3(unsigned((dim + 255) / 256), unsigned(n)), 256, 0, l, "moe combine", slots,
                weights, k, dim, out);
}

}  // namespace fp::cuda
