// CUDA kernels of the attention family (see attention_cuda.h).
//
// attention: one block of W warps per (token, head) (16 for decode steps, 4 otherwise).
// Lane l holds elements l, l+32, ... of q and of its accumulator (head_dim/32 registers
// each), so key rows are read coalesced. Each warp walks keys warp, warp+W, ... with an
// online softmax, the next key's row loading while the current one is reduced; the W
// partial (max, sum, acc) merge with the sink in shared memory. The key list is the CPU
// reference's: compressed rows in row order, then raw positions in order.
#include <cuda_runtime.h>

#include <cmath>

#include "ops/attention/attention_cuda.h"
#include "ops/attention/kv_value.cuh"
#include "ops/core/pdl.cuh"
#include "ops/numerics/numerics.cuh"
#include "ops/quant/cuda_common.cuh"
#include "ops/rope/rope.cuh"

namespace fp::cuda {
namespace {

// ---- kernels ------------------------------------------------------------------------
// Each opens with the PDL wait (ops/core/pdl.cuh): q, kv, the rings and the indexer's
// selection come from earlier kernels of the step.

__global__ void kv_store_kernel(KvStoreArgs a) {
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const int64_t t = blockIdx.x, pos = *a.pos0 + t;
  const int D = int(a.head_dim), nr = int(a.tab.n_rot);
  float* k = a.kv + t * D;
  dev::rope_heads_block(k, 1, D, nr, a.tab.inv_freq, pos, false);
  __syncthreads();
  if (a.official) {
    dev::fp8_kv_round_trip_row(k, D - nr);
    __syncthreads();
    dev::f16_round_row(k, D);
    __syncthreads();
  }
  const int64_t slot = (pos % a.raw_cap) * D;
  if (a.raw16) {  // F16 storage (official numerics: the row is F16-rounded above, so exact)
    for (int i = threadIdx.x; i < D; i += blockDim.x) a.raw16[slot + i] = __half_as_ushort(__float2half_rn(k[i]));
  } else {
    for (int i = threadIdx.x; i < D; i += blockDim.x) a.raw[slot + i] = k[i];
  }
}

template <typename T, int PL, int W>  // stored element (float or F16 bits), head_dim / 32, warps per block
__global__ void __launch_bounds__(32 * W) attention_kernel(AttentionArgs a) {
  constexpr int D = 32 * PL;
  __shared__ float sm_m[W], sm_l[W];
  __shared__ float sm_acc[W][D];
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t t = blockIdx.x / a.heads, h = blockIdx.x % a.heads;
  const int64_t p = *a.pos0 + t;

  // The token's keys: n_comp compressed rows, then raw positions lo..p.
  int64_t n_comp = 0;
  const int32_t* sel = nullptr;
  if ((a.comp || a.comp16) && a.ratio > 0) {
    const int64_t visible = min((p + 1) / a.ratio, a.max_rows);
    n_comp = visible;
    if (a.sel && a.nsel[t] >= 0) {
      n_comp = min(int64_t(a.nsel[t]), a.topk);
      sel = a.sel + t * a.topk;
    }
  }
  const int64_t lo = p - a.window + 1 > 0 ? p - a.window + 1 : 0;
  const int64_t n_keys = n_comp + (p - lo + 1);
  const int64_t visible = a.ratio > 0 ? min((p + 1) / a.ratio, a.max_rows) : 0;
  const T* raw = dev::kv_rows<T>(a.raw, a.raw16);
  const T* comp = dev::kv_rows<T>(a.comp, a.comp16);
  // Key j's row, or nullptr for a bad selected index (it reads nothing).
  auto key_row = [&](int64_t j) -> const T* {
    if (j < n_comp) {
      const int64_t r = sel ? int64_t(sel[j]) : j;
      return r < 0 || r >= visible ? nullptr : comp + r * D;
    }
    return raw + ((lo + j - n_comp) % a.raw_cap) * D;
  };

  const float* qh = a.q + (t * a.heads + h) * D;
  float q[PL], acc[PL], next[PL];
#pragma unroll
  for (int i = 0; i < PL; ++i) {
    q[i] = qh[lane + 32 * i];
    acc[i] = 0.0f;
  }
  // Software-pipelined: the next key's row is in flight while this one is reduced (a
  // key's loads were a full memory round trip on the critical path of each step).
  const T* k_next = warp < n_keys ? key_row(warp) : nullptr;
  if (k_next) {
#pragma unroll
    for (int i = 0; i < PL; ++i) next[i] = dev::kv_value(k_next[lane + 32 * i]);
  }
  float m = -INFINITY, l = 0.0f;
  for (int64_t j = warp; j < n_keys; j += W) {
    const bool have = k_next != nullptr;
    float kv[PL];
#pragma unroll
    for (int i = 0; i < PL; ++i) kv[i] = next[i];
    k_next = j + W < n_keys ? key_row(j + W) : nullptr;
    if (k_next) {
#pragma unroll
      for (int i = 0; i < PL; ++i) next[i] = dev::kv_value(k_next[lane + 32 * i]);
    }
    if (!have) continue;
    float dot = 0.0f;
#pragma unroll
    for (int i = 0; i < PL; ++i) dot += q[i] * kv[i];
    const float s = dev::warp_sum(dot) * a.scale;
    const float m_new = fmaxf(m, s);
    const float corr = m == -INFINITY ? 0.0f : expf(m - m_new);
    const float e = isnan(s) ? s : expf(s - m_new);
    l = l * corr + e;
#pragma unroll
    for (int i = 0; i < PL; ++i) acc[i] = acc[i] * corr + e * kv[i];
    m = m_new;
  }
  if (lane == 0) {
    sm_m[warp] = m;
    sm_l[warp] = l;
  }
#pragma unroll
  for (int i = 0; i < PL; ++i) sm_acc[warp][lane + 32 * i] = acc[i];
  __syncthreads();
  const float sink = a.sinks[h];
  float M = sink;
  for (int w = 0; w < W; ++w) M = fmaxf(M, sm_m[w]);
  float den = expf(sink - M), f[W];
  for (int w = 0; w < W; ++w) {
    f[w] = sm_m[w] == -INFINITY ? 0.0f : expf(sm_m[w] - M);
    den += sm_l[w] * f[w];
  }
  float* out = a.out + (t * a.heads + h) * D;
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float num = 0.0f;
    for (int w = 0; w < W; ++w) num += sm_acc[w][d] * f[w];
    out[d] = num / den;
  }
}

// A decode step has one block per head (64 for DS4 Flash), under half an H100's SMs:
// 16 warps per block split each head's keys four times finer than prefill's 4 warps,
// whose thousands of blocks fill the device anyway.
constexpr int64_t kFewTokens = 4;

template <typename T, int PL>
void launch_t(const AttentionArgs& a, const Launch& l) {
  if (a.n <= kFewTokens)
    launch_kernel(&attention_kernel<T, PL, 16>, unsigned(a.n * a.heads), 32 * 16, 0, l, "attention", a);
  else
    launch_kernel(&attention_kernel<T, PL, 4>, unsigned(a.n * a.heads), 32 * 4, 0, l, "attention", a);
}

template <int PL>
void launch(const AttentionArgs& a, const Launch& l) {
  if (a.raw16) {
    launch_t<uint16_t, PL>(a, l);
  } else {
    launch_t<float, PL>(a, l);
  }
}

}  // namespace

// ---- launchers ----------------------------------------------------------------------

void kv_rope_store(const KvStoreArgs& a, Launch l) {
  if (!a.kv || !(a.raw || a.raw16) || !a.pos0 || !a.tab.inv_freq) fail("cuda kv_rope_store: null buffer");
  if (a.raw && a.raw16) fail("cuda kv_rope_store: both an F32 and an F16 ring");
  if (a.raw16 && !a.official)
    fail("cuda kv_rope_store: an F16 ring needs official numerics (plain rows are not F16-rounded)");
  if (a.n <= 0 || a.head_dim <= 0 || a.raw_cap <= 0) fail("cuda kv_rope_store: bad sizes");
  if (a.tab.n_rot > a.head_dim || a.tab.n_rot % 2) fail("cuda kv_rope_store: n_rot ", a.tab.n_rot);
  launch_kernel(&kv_store_kernel, unsigned(a.n), 128, 0, l, "kv_rope_store", a);
}

bool attention_supported(int64_t head_dim) {
  return head_dim == 64 || head_dim == 128 || head_dim == 256 || head_dim == 512;
}

void check_attention_args(const AttentionArgs& a, const char* what) {  // attention_cuda.h
  if (!a.q || !a.out || !a.sinks || !a.pos0) fail(what, ": null buffer");
  if (a.raw16 ? (a.raw || a.comp) : (!a.raw || a.comp16))
    fail(what, ": KV rows must be all F32 (raw, comp) or all F16 (raw16, comp16)");
  if (a.n <= 0 || a.heads <= 0 || a.raw_cap <= 0 || a.window <= 0) fail(what, ": bad sizes");
  if ((a.comp || a.comp16) && (a.ratio <= 0 || a.max_rows <= 0)) fail(what, ": compressed rows without a ratio");
  if (a.sel && (!a.nsel || a.topk <= 0)) fail(what, ": indexer selection without counts");
}

void attention(const AttentionArgs& a, Launch l) {
  check_attention_args(a, "cuda attention");
  switch (a.head_dim) {
    case 64: launch<2>(a, l); break;
    case 128: launch<4>(a, l); break;
    case 256: launch<8>(a, l); break;
    case 512: launch<16>(a, l); break;
    default: fail("cuda attention: head_dim ", a.head_dim, ", expected 64, 128, 256 or 512");
  }
}

}  // namespace fp::cuda
