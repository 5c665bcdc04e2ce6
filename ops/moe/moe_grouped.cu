// Prefill path of the routed experts (cuda.moe.grouped_dequant_mma, see moe_cuda.h and
// NOTES.md). The per-slot matvec path re-reads an expert's whole matrix for every
// (token, slot) that chose it; here the step's slots are grouped by expert on the device
// and each tile (expert, up to kBM slots, a block of weight rows) dequantises its weight
// block once into shared memory as f16 and multiplies it against all the tile's slots on
// tensor cores (WMMA 16x16x16, f32 accumulate). So an expert's weights are read once per
// slot tile instead of once per slot.
//
//   group    one block: counts per expert, prefix sums, the tile list and the slot
//            permutation (slots sorted by expert). Out-of-range ids are left out of every
//            tile; the combine makes their token's output NaN, as the matvec path does.
//   to_f16   u -> f16 (the tensor cores' A operand).
//   gemm     <T, pair>: pair = gate and up of one expert in one block (64 + 64 rows),
//            epilogue clamped SwiGLU -> mid (f16, sorted order); !pair = down (128
//            rows), epilogue ys[slot] (f32, slot order).
//   combine  out[t] = sum over slots in slot order of weight * ys[slot].
//
// Every buffer is carved from the caller's workspace (moe_grouped_work_bytes, sized for
// the step's token count at set-up); grids are sized for the worst-case tile count and
// blocks past the device-side count return at once, so nothing reads a count on the host
// and the whole path can be captured in a CUDA graph.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <algorithm>

#include "ops/core/pdl.cuh"
#include "ops/core/smem_opt_in.cuh"
#include "ops/moe/moe_cuda.h"
#include "ops/quant/cuda_common.cuh"
#include "ops/quant/decode.cuh"

namespace fp::cuda {
namespace {

constexpr int kBM = int(kMoeGroupedTileSlots);
constexpr int kBN = 128;         // weight rows per block (pair: 64 gate + 64 up)
constexpr int kBK = 128;         // inputs per k step (half a 256-block, four 32-runs)
constexpr int kLd = kBK + 8;     // f16 row stride in shared memory: rows 4 banks apart
constexpr int kLdc = kBN + 4;    // f32 staging row stride
constexpr int kThreads = 256;    // 8 warps: 2 (slots) x 4 (rows), 32 x 32 outputs each
constexpr int kGroupThreads = 1024;
constexpr size_t kSmemBytes = size_t(kBM + kBN) * kLd * sizeof(__half);
static_assert(size_t(kBM) * kLdc * sizeof(float) <= kSmemBytes, "f32 staging must fit in the operand buffers");

struct Tile {
  int32_t expert, p0, rows, pad;  // slots [p0, p0 + rows) of the sorted order
};
static_assert(kThreads == 256, "the IQ2_XXS grid is copied one entry a thread");
static_assert(sizeof(Tile) == 16, "moe_grouped_layout counts 16 bytes a tile");

// ---- kernels ------------------------------------------------------------------------
// Each opens with the PDL wait (ops/core/pdl.cuh): ids, u, the tile list and the
// intermediate outputs come from earlier kernels, and the workspace may still be read by
// the previous step's kernels.

// One block. Shared: count / cursor, first sorted position and first tile per expert.
__global__ void group_kernel(const int32_t* ids, int32_t q, int32_t n_expert, int32_t* n_tiles, Tile* tiles,
                             int32_t* perm) {
  extern __shared__ int32_t sh[];
  dev::wait_prev_grid();
  dev::allow_next_grid();
  int32_t *cnt = sh, *start = sh + n_expert, *tstart = sh + 2 * n_expert;
  for (int e = threadIdx.x; e < n_expert; e += blockDim.x) cnt[e] = 0;
  __syncthreads();
  for (int i = threadIdx.x; i < q; i += blockDim.x) {
    const int32_t e = ids[i];
    if (e >= 0 && e < n_expert) atomicAdd(&cnt[e], 1);
  }
  __syncthreads();
  if (threadIdx.x == 0) {  // a few hundred experts: serial is cheaper than a scan here
    int32_t p = 0, t = 0;
    for (int e = 0; e < n_expert; ++e) {
      start[e] = p;
      tstart[e] = t;
      p += cnt[e];
      t += (cnt[e] + kBM - 1) / kBM;
    }
    *n_tiles = t;
  }
  __syncthreads();
  for (int e = threadIdx.x; e < n_expert; e += blockDim.x) {
    const int32_t c = cnt[e];
    for (int32_t j = 0; j * kBM < c; ++j) tiles[tstart[e] + j] = Tile{e, start[e] + j * kBM, min(kBM, c - j * kBM), 0};
    cnt[e] = 0;  // now the scatter cursor (this thread owns e)
  }
  __syncthreads();
  // Order within an expert is the atomics' order: harmless, each slot's row of the tile
  // product is computed the same way wherever it sits, so results are bit-identical.
  for (int i = threadIdx.x; i < q; i += blockDim.x) {
    const int32_t e = ids[i];
    if (e >= 0 && e < n_expert) perm[start[e] + atomicAdd(&cnt[e], 1)] = i;
  }
}

__global__ void to_f16_kernel(const float* x, int64_t n, __half* y) {
  dev::wait_prev_grid();
  dev::allow_next_grid();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = __float2half_rn(x[i]);
}

// One 32-weight run of a row, split into fetch (global loads into registers, issued a k
// step ahead so their latency hides behind the MMAs) and decode (f32 values, the same
// formulas and bits as dev::decode32; IQ2_XXS: decode_f16, straight to the f16 tile).
// IQ2_XXS and Q2_K, DS4's expert types, keep the raw bits in registers; the other types
// keep the address and decode from global memory.
struct Tables {
  const uint64_t* grid;  // IQ2_XXS grid in shared memory
  const uint64_t* mask;  // IQ2_XXS sign masks (byte j 0xff: weight j negative) in shared memory
};

template <DType T>
struct Run {
  const uint8_t* row;
  int64_t c;
  __device__ __forceinline__ void fetch(const uint8_t* r, int64_t c_) {
    row = r;
    c = c_;
  }
  __device__ __forceinline__ void decode(const Tables&, float* y) const {
    if constexpr (T == DType::F16) {
      const uint8_t* p = row + 2 * c;
#pragma unroll
      for (int j = 0; j < 32; ++j) y[j] = dev::h2f(dev::ld_u16(p + 2 * j));
    } else {
      constexpr int qk = dev::kRuns<T> * 32;
      dev::decode32<T>(row + (c / qk) * dev::kBlockBytes<T>, int((c % qk) / 32), y);
    }
  }
};

template <>
struct Run<DType::IQ2_XXS> {
  uint32_t d, a, w;
  __device__ __forceinline__ void fetch(const uint8_t* row, int64_t c) {
    const uint8_t* b = row + (c / 256) * 66;
    const int r = int(c % 256) / 32;
    d = dev::ld_u16(b);
    a = dev::ld_u32_a2(b + 2 + 8 * r);
    w = dev::ld_u32_a2(b + 6 + 8 * r);
  }
  // The run's 32 weights as f16, 8 to a uint4, in integer and f16x2 arithmetic: weight =
  // sign·g·m·(d/8) with m = 2·ls + 1. Per 4 weights: the signed grid bytes biased by 128
  // (g ^ mask ^ 0x80 plus the mask's low bits: no carry leaves a byte, as g >= 8), two
  // byte permutes into f16 1024 + (128 + sign·g), one HFMA2 to the exact integer sign·g·m
  // (|.| <= 43·31; the constant -1152·m is exact in f16) and one HMUL2 by d/8, which rounds
  // the exact product once: the f32 path's bits (dev::decode32 times the f16 rounding)
  // while d/8 is a normal f16 (d >= 2^-11); below that d/8 is rounded first.
  __device__ __forceinline__ void decode_f16(const Tables& t, uint4* out) const {
    const int m = 2 * int(w >> 28) + 1;
    const __half2 m2 = __float2half2_rn(float(m)), c2 = __float2half2_rn(float(-1152 * m));
    const __half2 d8 = __float2half2_rn(dev::h2f(d) * 0.125f);
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const uint64_t G = t.grid[(a >> (8 * l)) & 255], M = t.mask[(w >> (7 * l)) & 127];
      uint32_t h[4];
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        const uint32_t g = uint32_t(G >> (32 * k)), mk = uint32_t(M >> (32 * k));
        const uint32_t u = (g ^ mk ^ 0x80808080u) + (mk & 0x01010101u);
        h[2 * k] = __byte_perm(u, 0x64646464u, 0x5140);
        h[2 * k + 1] = __byte_perm(u, 0x64646464u, 0x7362);
      }
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        __half2 v = *reinterpret_cast<const __half2*>(&h[i]);
        v = __hmul2(__hfma2(v, m2, c2), d8);
        h[i] = *reinterpret_cast<const uint32_t*>(&v);
      }
      out[l] = make_uint4(h[0], h[1], h[2], h[3]);
    }
  }
};

template <>
struct Run<DType::Q2_K> {
  uint32_t sc, dm, qs[8];
  int shift;
  __device__ __forceinline__ void fetch(const uint8_t* row, int64_t c) {
    const uint8_t* b = row + (c / 256) * 84;
    const int r = int(c % 256) / 32;
    // 84-byte blocks in rows of whole blocks from a 16-aligned base: every block is
    // 4-aligned, so the 32 quant bytes come in as eight 4-byte loads.
    sc = dev::ld_u16(b + 2 * r);
    dm = *reinterpret_cast<const uint32_t*>(b + 80);
    const uint32_t* q4 = reinterpret_cast<const uint32_t*>(b + 16 + 32 * (r >> 2));
#pragma unroll
    for (int j = 0; j < 8; ++j) qs[j] = q4[j];
    shift = 2 * (r & 3);
  }
  __device__ __forceinline__ void decode(const Tables&, float* y) const {
    const float d = dev::h2f(dm), dmin = dev::h2f(dm >> 16);
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const uint32_t s8 = (sc >> (8 * k)) & 255;
      const float dl = d * float(s8 & 15), ml = dmin * float(s8 >> 4);
#pragma unroll
      for (int l = 0; l < 16; ++l) {
        const int i = 16 * k + l;
        y[i] = dl * float((qs[i / 4] >> (8 * (i % 4) + shift)) & 3) - ml;
      }
    }
  }
};

struct GemmArgs {
  const uint8_t* w = nullptr;   // [experts][rows][cols]: gate (pair) or down
  const uint8_t* w2 = nullptr;  // up (pair)
  int64_t rows = 0, cols = 0, row_bytes = 0;
  const __half* a = nullptr;    // pair: xh [n][cols] read through perm / k; else mid [pos][cols]
  int32_t k = 0;
  const int32_t* perm = nullptr;
  const Tile* tiles = nullptr;
  const int32_t* n_tiles = nullptr;
  __half* mid = nullptr;        // pair output [pos][rows]
  float* ys = nullptr;          // down output [slot][rows]
  float limit = 0;
};

__device__ __forceinline__ float swiglu1(float g, float u, float limit) {
  if (limit > 0) {  // std::min / std::clamp semantics: a NaN stays NaN
    g = limit < g ? limit : g;
    u = u < -limit ? -limit : (limit < u ? limit : u);
  }
  return float(double(g) / (1.0 + exp(-double(g)))) * u;
}

// Block (blockIdx.x: weight-row block, blockIdx.y: tile). One shared buffer: store the
// k step's A vectors and decoded weights (fetched into registers during the previous
// step's MMAs), sync, fetch the next step, 8 k-fragments of WMMA, sync.
template <DType T, bool kPair>
__global__ void __launch_bounds__(kThreads, 2) gemm_kernel(GemmArgs g) {
  using namespace nvcuda;
  dev::wait_prev_grid();
  dev::allow_next_grid();
  if (int32_t(blockIdx.y) >= *g.n_tiles) return;
  const Tile tl = g.tiles[blockIdx.y];
  extern __shared__ __align__(128) uint8_t smem[];
  __half* sA = reinterpret_cast<__half*>(smem);
  __half* sW = sA + kBM * kLd;
  float* sC = reinterpret_cast<float*>(smem);
  __shared__ const __half* a_row[kBM];
  __shared__ int32_t out_slot[kBM];
  __shared__ uint64_t s_grid[T == DType::IQ2_XXS ? 256 : 1];
  __shared__ uint64_t s_mask[T == DType::IQ2_XXS ? 128 : 1];
  const int tid = threadIdx.x, warp = tid / 32, wm = warp & 1, wn = warp >> 1;
  if constexpr (T == DType::IQ2_XXS) {
    s_grid[tid] = g_iq2xxs_grid[tid];  // kThreads == 256 entries
    if (tid < 128) s_mask[tid] = g_sign_mask[tid];
  }
  if (tid < kBM) {
    const bool ok = tid < tl.rows;
    const int32_t slot = ok ? g.perm[tl.p0 + tid] : -1;
    if constexpr (kPair) a_row[tid] = ok ? g.a + int64_t(slot / g.k) * g.cols : nullptr;
    else a_row[tid] = ok ? g.a + int64_t(tl.p0 + tid) * g.cols : nullptr;
    out_slot[tid] = slot;
  }
  const int64_t n0 = int64_t(blockIdx.x) * (kPair ? kBN / 2 : kBN);
  const uint8_t* w1 = g.w + int64_t(tl.expert) * g.rows * g.row_bytes;
  const uint8_t* w2 = kPair ? g.w2 + int64_t(tl.expert) * g.rows * g.row_bytes : nullptr;
  __syncthreads();

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
  const bool active = 32 * wm < tl.rows;  // warps whose 32 slots are all padding skip the MMAs

  // Register stage: this thread's A vectors and weight runs of the next k step.
  constexpr int kAVec = kBM * (kBK / 8) / kThreads, kWRuns = kBN * (kBK / 32) / kThreads;
  static_assert(kAVec * kThreads == kBM * (kBK / 8) && kWRuns * kThreads == kBN * (kBK / 32), "tile split");
  uint4 av[kAVec];
  Run<T> wr[kWRuns];
  auto fetch = [&](int64_t k0) {
#pragma unroll
    for (int v = 0; v < kAVec; ++v) {
      const int i = tid + v * kThreads, r = i / (kBK / 8), c = i % (kBK / 8);
      const __half* src = a_row[r];
      av[v] = src ? *reinterpret_cast<const uint4*>(src + k0 + 8 * c) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int v = 0; v < kWRuns; ++v) {
      const int i = tid + v * kThreads, r = i / (kBK / 32), run = i % (kBK / 32);
      const uint8_t* row;
      if constexpr (kPair) row = r < kBN / 2 ? w1 + (n0 + r) * g.row_bytes : w2 + (n0 + r - kBN / 2) * g.row_bytes;
      else row = w1 + (n0 + r) * g.row_bytes;
      wr[v].fetch(row, k0 + 32 * run);
    }
  };
  const Tables tab{s_grid, s_mask};
  fetch(0);
  for (int64_t k0 = 0; k0 < g.cols; k0 += kBK) {
#pragma unroll
    for (int v = 0; v < kAVec; ++v) {
      const int i = tid + v * kThreads, r = i / (kBK / 8), c = i % (kBK / 8);
      *reinterpret_cast<uint4*>(sA + r * kLd + 8 * c) = av[v];
    }
#pragma unroll
    for (int v = 0; v < kWRuns; ++v) {
      const int i = tid + v * kThreads, r = i / (kBK / 32), run = i % (kBK / 32);
      uint4* dst = reinterpret_cast<uint4*>(sW + r * kLd + 32 * run);
      if constexpr (T == DType::IQ2_XXS) {
        uint4 h[4];
        wr[v].decode_f16(tab, h);
#pragma unroll
        for (int q = 0; q < 4; ++q) dst[q] = h[q];
      } else {
        float y[32];
        wr[v].decode(tab, y);
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          __half2 h[4];
#pragma unroll
          for (int j = 0; j < 4; ++j) h[j] = __floats2half2_rn(y[8 * q + 2 * j], y[8 * q + 2 * j + 1]);
          dst[q] = *reinterpret_cast<const uint4*>(h);
        }
      }
    }
    __syncthreads();
    if (k0 + kBK < g.cols) fetch(k0 + kBK);  // in flight during the MMAs
    if (active) {
#pragma unroll
      for (int kk = 0; kk < kBK / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa[2];
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> fb[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], sA + (32 * wm + 16 * i) * kLd + 16 * kk, kLd);
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], sW + (32 * wn + 16 * j) * kLd + 16 * kk, kLd);
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
      }
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(sC + (32 * wm + 16 * i) * kLdc + 32 * wn + 16 * j, acc[i][j], kLdc, wmma::mem_row_major);
  __syncthreads();
  if constexpr (kPair) {
    constexpr int H = kBN / 2;
    for (int i = tid; i < kBM * H; i += kThreads) {
      const int r = i / H, c = i % H;
      if (r < tl.rows)
        g.mid[int64_t(tl.p0 + r) * g.rows + n0 + c] = __float2half_rn(swiglu1(sC[r * kLdc + c], sC[r * kLdc + H + c], g.limit));
    }
  } else {
    for (int i = tid; i < kBM * kBN; i += kThreads) {
      const int r = i / kBN, c = i % kBN;
      if (r < tl.rows) g.ys[int64_t(out_slot[r]) * g.rows + n0 + c] = sC[r * kLdc + c];
    }
  }
}

// out[t][d] = sum_i w[t][i] * ys[t*k + i][d] in slot order; a slot whose id is out of
// range was in no tile, and adds NaN (as its matvec outputs would). Block (256 dims, token).
__global__ void combine_kernel(const float* ys, const float* w, const int32_t* ids, int32_t n_expert, int64_t k,
                               int64_t dim, float* out) {
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const int64_t t = blockIdx.y, d = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (d >= dim) return;
  float o = 0.0f;
  for (int64_t i = 0; i < k; ++i) {
    const int64_t q = t * k + i;
    const int32_t e = ids[q];
    o += w[q] * (e >= 0 && e < n_expert ? ys[q * dim + d] : __int_as_float(0x7fc00000));
  }
  out[t * dim + d] = o;
}

// ---- launch helpers -----------------------------------------------------------------

template <DType T, bool kPair>
void launch_gemm(const GemmArgs& g, dim3 grid, const Launch& l) {
  opt_in_smem(reinterpret_cast<const void*>(&gemm_kernel<T, kPair>), kSmemBytes, "moe grouped gemm");
  launch_kernel(&gemm_kernel<T, kPair>, grid, kThreads, kSmemBytes, l, kPair ? "moe grouped gate/up" : "moe grouped down",
                g);
}

template <bool kPair>
void gemm(DType t, const GemmArgs& g, dim3 grid, const Launch& l) {
  switch (t) {
    case DType::IQ2_XXS: return launch_gemm<DType::IQ2_XXS, kPair>(g, grid, l);
    case DType::Q2_K: return launch_gemm<DType::Q2_K, kPair>(g, grid, l);
    case DType::Q4_K: return launch_gemm<DType::Q4_K, kPair>(g, grid, l);
    case DType::Q8_0: return launch_gemm<DType::Q8_0, kPair>(g, grid, l);
    case DType::F16: return launch_gemm<DType::F16, kPair>(g, grid, l);
    default: fail("cuda moe grouped: weight type ", dtype_name(t), " has no grouped kernel");
  }
}

bool grouped_type(DType t) {
  return t == DType::IQ2_XXS || t == DType::Q2_K || t == DType::Q4_K || t == DType::Q8_0 || t == DType::F16;
}

}  // namespace

// ---- launchers ----------------------------------------------------------------------

std::string moe_grouped_unsupported(const ref::Weight& gate, const ref::Weight& up, const ref::Weight& down) {
  for (const ref::Weight* w : {&gate, &up, &down})
    if (!grouped_type(w->type)) return str(w->name, ": dtype ", dtype_name(w->type), ", grouped kernel serves IQ2_XXS, Q2_K, Q4_K, Q8_0, F16");
  if (gate.type != up.type) return str(up.name, ": dtype ", dtype_name(up.type), ", expected the gate's ", dtype_name(gate.type));
  const int64_t dim = gate.cols, ff = gate.rows;
  if (dim % kBN != 0 || dim % 256 != 0) return str(gate.name, ": model width ", dim, ", expected a multiple of 256");
  if (ff % kBK != 0 || ff % 256 != 0) return str(gate.name, ": expert width ", ff, ", expected a multiple of 256");
  return "";
}

void moe_grouped_init() { upload_iq_tables(); }

void moe_grouped(const MoeArgs& a, Launch l) {
  const int64_t dim = a.gate.cols, ff = a.gate.rows, q = a.n * a.k, NE = a.gate.experts;
  if (a.up.rows != ff || a.up.cols != dim || a.down.rows != dim || a.down.cols != ff)
    fail(a.down.name, ": expert shapes do not agree with ", a.gate.name);
  if (a.gate.experts != a.up.experts || a.gate.experts != a.down.experts)
    fail(a.gate.name, ": expert counts differ between gate, up and down");
  if (!a.u || !a.ids || !a.weights || !a.out || !a.grouped_work || q <= 0)
    fail("cuda moe grouped: null buffer or no tokens");
  if (const std::string why = moe_grouped_unsupported(a.gate, a.up, a.down); !why.empty()) fail("cuda moe grouped: ", why);
  for (const ref::Weight* w : {&a.gate, &a.up, &a.down})
    if (!aligned(w->data, 16)) fail(w->name, ": device base not 16-byte aligned");
  const MoeGroupedLayout lay = moe_grouped_layout(a.n, a.k, dim, ff, NE);
  if (a.grouped_work_bytes < lay.bytes)
    fail("cuda moe grouped: workspace of ", a.grouped_work_bytes, " bytes, ", a.n, " tokens need ", lay.bytes);
  if (lay.max_tiles > 65535 || a.n > 65535) fail("cuda moe grouped: ", a.n, " tokens (", lay.max_tiles, " tiles), at most 65535 each per launch");
  if (NE * 3 * 4 > 48 * 1024) fail("cuda moe grouped: ", NE, " experts, at most 4096 supported");
  moe_grouped_init();  // once per device; the first call must come before any capture

  uint8_t* base = static_cast<uint8_t*>(a.grouped_work);
  int32_t* n_tiles = reinterpret_cast<int32_t*>(base + lay.ntiles);
  Tile* tiles = reinterpret_cast<Tile*>(base + lay.tiles);
  int32_t* perm = reinterpret_cast<int32_t*>(base + lay.perm);
  __half* xh = reinterpret_cast<__half*>(base + lay.xh);
  __half* mid = reinterpret_cast<__half*>(base + lay.mid);
  float* ys = reinterpret_cast<float*>(base + lay.ys);

  // Multi-GPU: other devices' slots get id -1, which the grouping skips.
  const int32_t* ids = a.slots ? moe_local_ids(a, l) : a.ids;
  launch_kernel(&group_kernel, 1, kGroupThreads, size_t(NE) * 3 * 4, l, "moe grouped group", ids, int32_t(q),
                int32_t(NE), n_tiles, tiles, perm);
  launch_kernel(&to_f16_kernel, unsigned(std::min<int64_t>((a.n * dim + 255) / 256, 4096)), 256, 0, l,
                "moe grouped to_f16", a.u, a.n * dim, xh);

  GemmArgs g;
  g.k = int32_t(a.k);
  g.perm = perm;
  g.tiles = tiles;
  g.n_tiles = n_tiles;
  g.limit = a.limit;
  g.w = a.gate.data;
  g.w2 = a.up.data;
  g.rows = ff;
  g.cols = dim;
  g.row_bytes = a.gate.row_bytes();
  g.a = xh;
  g.mid = mid;
  gemm<true>(a.gate.type, g, dim3(unsigned(ff / (kBN / 2)), unsigned(lay.max_tiles)), l);

  g.w = a.down.data;
  g.w2 = nullptr;
  g.rows = dim;
  g.cols = ff;
  g.row_bytes = a.down.row_bytes();
  g.a = mid;
  g.ys = a.slots ? a.slots : ys;
  gemm<false>(a.down.type, g, dim3(unsigned(dim / kBN), unsigned(lay.max_tiles)), l);
  if (a.slots) return moe_clear_foreign_slots(a, l);  // skipped slots were not written

  launch_kernel(&combine_kernel, dim3(unsigned((dim + 255) / 256), unsigned(a.n)), 256, 0, l, "moe grouped combine", ys,
                a.weights, a.ids, int32_t(NE), a.k, dim, a.out);
}

}  // namespace fp::cuda
