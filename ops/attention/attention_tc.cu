// Prefill attention on tensor cores (cuda.attention.prefill; attention_cuda.h).
//
// DS4 has one K=V head shared by all query heads (MQA), so a token's score matrix for a
// group of heads is a product: S[h][j] = q_h . k_j over head_dim, then O = P K. The
// CUDA-core kernel (attention.cu) gives every (token, head) its own block, which reads
// the token's key rows once per head: at a 2048-token chunk that is ~170 GB of L2 reads
// per layer, and it measured 10.3 ms a layer on an H100 (bench/results/h100-2026-12-07-
// call4). Here a block takes one token and 16 heads: it stages 32 key rows at a time in
// shared memory and runs both products on tensor cores (mma.sync m16n8k8), so each row is
// read once per 16 heads.
//
// Numerics: every operand x is split into two TF32 values, x = hi + lo (hi = x rounded to
// TF32, lo = the rest rounded to TF32), and a product is hi.hi + hi.lo + lo.hi with F32
// accumulation ("3xTF32"): about F32's accuracy (the dropped lo.lo term and lo's rounding
// are ~2^-22 relative), so the CPU reference's bound (1e-5 relative L2) holds. The
// softmax runs in F32 online over key tiles; the sink joins the denominator at the end.
// The order of keys in a sum differs from the reference's: results are close, not equal.
// Rows stored as F16 (AttentionArgs::raw16 / comp16) are staged as F16 (half the shared
// memory and L2 traffic); TF32 holds an F16 value exactly, so their products need two
// TF32 terms, not three.
//
// Block: 4 warps, one token, heads h0 .. h0+15 (rows past the last head are zeros and
// never stored). Per key tile: warp w computes the 16x8 scores of keys 8w..8w+7; warp w
// then runs the softmax of heads 4w..4w+3 over the tile's 32 keys; and warp w
// accumulates output dims [w D/4, (w+1) D/4) for all 16 heads in registers.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "ops/attention/attention_cuda.h"
#include "ops/attention/attention_tc_tiles.h"
#include "ops/attention/kv_value.cuh"
#include "ops/core/block_reduce.cuh"
#include "ops/core/pdl.cuh"
#include "ops/core/smem_opt_in.cuh"
#include "ops/quant/cuda_common.cuh"

namespace fp::cuda {
namespace {

using attention_tc::kHeads;
using attention_tc::kKeys;
using attention_tc::kLdP;
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;

constexpr int ld_of(int D) { return attention_tc::ld_q(D); }
template <typename T>
constexpr int ldk_of(int D) {
  return attention_tc::ld_k(D, sizeof(T));
}
template <typename T>
constexpr size_t smem_bytes(int D) {
  return attention_tc::smem_bytes(D, sizeof(T));
}

__device__ __forceinline__ uint32_t to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return r;
}

// x = hi + lo, both TF32 (x - hi is exact in F32).
__device__ __forceinline__ void split(float x, uint32_t& hi, uint32_t& lo) {
  hi = to_tf32(x);
  lo = to_tf32(x - __uint_as_float(hi));
}

// c += a b for a 16x8 tile, K = 8, TF32 operands in the PTX fragment layouts:
// a0 (g, t) a1 (g+8, t) a2 (g, t+4) a3 (g+8, t+4); b0 (k t, n g) b1 (k t+4, n g);
// c0, c1 (g, 2t, 2t+1) c2, c3 (g+8, 2t, 2t+1), with g = lane / 4, t = lane % 4.
__device__ __forceinline__ void mma_tf32(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// c += a b in about F32 accuracy: three TF32 products, the small ones first. kExactB: b
// came from F16, whose 11-bit significand TF32 holds exactly, so b's low part is zero
// and its product is skipped.
template <bool kExactB>
__device__ __forceinline__ void mma_3xtf32(float (&c)[4], const uint32_t (&ah)[4], const uint32_t (&al)[4],
                                           const float (&b)[2]) {
  uint32_t bh[2], bl[2];
  split(b[0], bh[0], bl[0]);
  split(b[1], bh[1], bl[1]);
  mma_tf32(c, al, bh);
  if (!kExactB) mma_tf32(c, ah, bl);
  mma_tf32(c, ah, bh);
}

// 16 bytes global -> shared without passing through registers; src == nullptr writes
// zeros and reads nothing (src-size 0; `dummy` is any valid address). All of a thread's
// copies are in flight together until cp_async_wait_all: the tile's row loads wait one
// memory latency, not one per load.
template <typename T>
__device__ __forceinline__ void cp_async16(T* dst, const T* src, const T* dummy) {
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src ? src : dummy),
               "r"(src ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;" ::: "memory"); }

__device__ __forceinline__ void split4(const float (&a)[4], uint32_t (&hi)[4], uint32_t (&lo)[4]) {
#pragma unroll
  for (int i = 0; i < 4; ++i) split(a[i], hi[i], lo[i]);
}

template <typename T, int D>  // T: the stored KV element (float, or F16 bits as uint16_t)
__global__ void __launch_bounds__(kThreads) attention_tc_kernel(AttentionArgs a) {
  constexpr int LD = ld_of(D), LDK = ldk_of<T>(D);
  constexpr int NT = D / (8 * kWarps);  // output n-tiles (8 dims) per warp
  constexpr int kPer16 = 16 / int(sizeof(T));  // elements per 16-byte copy
  constexpr bool kF16 = sizeof(T) == 2;
  static_assert(D % (8 * kWarps) == 0, "head_dim must split into 8-dim tiles over the warps");
  extern __shared__ float4 smem4[];
  float* sq = reinterpret_cast<float*>(smem4);  // [kHeads][LD]
  float* sp = sq + kHeads * LD;                  // [kHeads][kLdP]: scores, then probabilities
  T* sk = reinterpret_cast<T*>(sp + kHeads * kLdP);  // [kKeys][LDK]
  __shared__ const T* rows[kKeys];                // the tile's key rows; nullptr: masked
  const T* raw = dev::kv_rows<T>(a.raw, a.raw16);
  const T* comp = dev::kv_rows<T>(a.comp, a.comp16);
  __shared__ float s_m[kHeads], s_l[kHeads], s_corr[kHeads];

  dev::wait_prev_grid();
  dev::allow_next_grid();
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t4 = lane & 3;
  const int64_t t = blockIdx.x, h0 = int64_t(blockIdx.y) * kHeads;
  const int64_t p = *a.pos0 + t;

  // The token's keys, as attention.cu and the CPU reference list them: n_comp compressed
  // rows (all visible ones, or the indexer's selection), then raw positions lo..p.
  const int64_t visible = comp && a.ratio > 0 ? min((p + 1) / a.ratio, a.max_rows) : 0;
  int64_t n_comp = visible;
  const int32_t* sel = nullptr;
  if (comp && a.sel && a.nsel[t] >= 0) {
    n_comp = min(int64_t(a.nsel[t]), a.topk);
    sel = a.sel + t * a.topk;
  }
  const int64_t lo = p - a.window + 1 > 0 ? p - a.window + 1 : 0;
  const int64_t n_keys = n_comp + (p - lo + 1);

  // Q rows of this block's heads (zeros past the last head); waited for with the first
  // key tile.
#pragma unroll 4
  for (int i = tid; i < kHeads * (D / 4); i += kThreads) {
    const int r = i / (D / 4), c = i % (D / 4);
    cp_async16(sq + r * LD + 4 * c, h0 + r < a.heads ? a.q + (t * a.heads + h0 + r) * D + 4 * c : nullptr, a.q);
  }
  if (tid < kHeads) {
    s_m[tid] = -INFINITY;
    s_l[tid] = 0.0f;
  }

  float acc[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;

  for (int64_t k0 = 0; k0 < n_keys; k0 += kKeys) {
    __syncthreads();  // the previous tile's rows, keys and probabilities are no longer read
    if (tid < kKeys) {
      const int64_t j = k0 + tid;
      const T* r = nullptr;
      if (j < n_comp) {
        const int64_t c = sel ? int64_t(sel[j]) : j;
        if (c >= 0 && c < visible) r = comp + c * D;  // a bad selected index reads nothing
      } else if (j < n_keys) {
        r = raw + ((lo + j - n_comp) % a.raw_cap) * D;
      }
      rows[tid] = r;
    }
    __syncthreads();
#pragma unroll 8
    for (int i = tid; i < kKeys * (D / kPer16); i += kThreads) {
      const int r = i / (D / kPer16), c = i % (D / kPer16);
      const T* src = rows[r];
      cp_async16(sk + r * LDK + kPer16 * c, src ? src + kPer16 * c : nullptr, raw);
    }
    cp_async_wait_all();
    __syncthreads();

    // Scores of keys 8w .. 8w+7: two accumulators over alternate k-steps for more
    // independent mma chains.
    {
      float c[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
      const float* qa = sq + g * LD + t4;
      const T* kb = sk + (8 * warp + g) * LDK + t4;
#pragma unroll 4
      for (int kk = 0; kk < D; kk += 8) {
        const float av[4] = {qa[kk], qa[8 * LD + kk], qa[kk + 4], qa[8 * LD + kk + 4]};
        const float bv[2] = {dev::kv_value(kb[kk]), dev::kv_value(kb[kk + 4])};
        uint32_t ah[4], al[4];
        split4(av, ah, al);
        mma_3xtf32<kF16>(c[(kk >> 3) & 1], ah, al, bv);
      }
      const int col = 8 * warp + 2 * t4;
      sp[g * kLdP + col] = (c[0][0] + c[1][0]) * a.scale;
      sp[g * kLdP + col + 1] = (c[0][1] + c[1][1]) * a.scale;
      sp[(g + 8) * kLdP + col] = (c[0][2] + c[1][2]) * a.scale;
      sp[(g + 8) * kLdP + col + 1] = (c[0][3] + c[1][3]) * a.scale;
    }
    __syncthreads();

    // Online softmax of heads 4w .. 4w+3, a lane per key. A masked key (past the list,
    // or a bad selected index) weighs 0; a NaN score propagates as in attention.cu.
    const bool valid = rows[lane] != nullptr;
#pragma unroll
    for (int rr = 0; rr < kHeads / kWarps; ++rr) {
      const int r = (kHeads / kWarps) * warp + rr;
      const float s = valid ? sp[r * kLdP + lane] : -INFINITY;
      const float m_old = s_m[r];
      const float m_new = fmaxf(m_old, dev::warp_reduce_max(s));
      const float corr = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
      const float e = s == -INFINITY ? 0.0f : (isnan(s) ? s : expf(s - m_new));
      const float sum = dev::warp_reduce_sum(e);
      sp[r * kLdP + lane] = e;
      if (lane == 0) {
        s_m[r] = m_new;
        s_l[r] = s_l[r] * corr + sum;
        s_corr[r] = corr;
      }
    }
    __syncthreads();

    // O = O * corr + P V over this warp's dims.
    const float cg = s_corr[g], cg8 = s_corr[g + 8];
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      acc[n][0] *= cg;
      acc[n][1] *= cg;
      acc[n][2] *= cg8;
      acc[n][3] *= cg8;
    }
#pragma unroll
    for (int kk = 0; kk < kKeys; kk += 8) {
      const float av[4] = {sp[g * kLdP + kk + t4], sp[(g + 8) * kLdP + kk + t4], sp[g * kLdP + kk + t4 + 4],
                           sp[(g + 8) * kLdP + kk + t4 + 4]};
      uint32_t ah[4], al[4];
      split4(av, ah, al);
      const T* vb = sk + (kk + t4) * LDK + warp * (D / kWarps) + g;
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        const float bv[2] = {dev::kv_value(vb[8 * n]), dev::kv_value(vb[4 * LDK + 8 * n])};
        mma_3xtf32<kF16>(acc[n], ah, al, bv);
      }
    }
  }
  __syncthreads();  // s_m, s_l of the last tile

  // out = O e^(m-M) / (l e^(m-M) + e^(sink-M)), M = max(m, sink): the reference's
  // normalisation with the sink in the denominator only.
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = g + 8 * half;
    const int64_t h = h0 + r;
    if (h >= a.heads) continue;
    const float m = s_m[r], sink = a.sinks[h];
    const float M = fmaxf(m, sink);
    const float f = m == -INFINITY ? 0.0f : expf(m - M);
    const float factor = f / (s_l[r] * f + expf(sink - M));
    float* out = a.out + (t * a.heads + h) * D + warp * (D / kWarps) + 2 * t4;
#pragma unroll
    for (int n = 0; n < NT; ++n) {
      out[8 * n] = acc[n][2 * half] * factor;
      out[8 * n + 1] = acc[n][2 * half + 1] * factor;
    }
  }
}

template <typename T, int D>
void launch_tc_t(const AttentionArgs& a, const Launch& l) {
  const size_t smem = smem_bytes<T>(D);
  opt_in_smem(reinterpret_cast<const void*>(&attention_tc_kernel<T, D>), smem, "attention (tensor cores)");
  const dim3 grid(unsigned(a.n), unsigned((a.heads + kHeads - 1) / kHeads));
  launch_kernel(&attention_tc_kernel<T, D>, grid, kThreads, smem, l, "attention (tensor cores)", a);
}

template <int D>
void launch_tc(const AttentionArgs& a, const Launch& l) {
  if (a.raw16) {
    launch_tc_t<uint16_t, D>(a, l);
  } else {
    launch_tc_t<float, D>(a, l);
  }
}

}  // namespace

void attention_prefill_tc(const AttentionArgs& a, Launch l) {
  const char* what = "cuda attention (tensor cores)";
  check_attention_args(a, what);
  // Rows are read 16 bytes at a time: the buffers' bases must be 16-byte aligned (cudaMalloc's are).
  if (!aligned(a.q, 16) || !aligned(a.raw ? static_cast<const void*>(a.raw) : a.raw16, 16) ||
      !aligned(a.comp ? static_cast<const void*>(a.comp) : a.comp16, 16))
    fail(what, ": q, raw or compressed rows not 16-byte aligned");
  switch (a.head_dim) {
    case 64: launch_tc<64>(a, l); break;
    case 128: launch_tc<128>(a, l); break;
    case 256: launch_tc<256>(a, l); break;
    case 512: launch_tc<512>(a, l); break;
    default: fail(what, ": head_dim ", a.head_dim, ", expected 64, 128, 256 or 512");
  }
}

}  // namespace fp::cuda
