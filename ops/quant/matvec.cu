// Decode matvecs y = W x over GGUF-layout weights, dense and expert-indexed (quant_cuda.h).
// Decode is bandwidth-bound: these kernels carry nearly all of a decoded token's bytes, so
// the design goal is to stream weight bytes at close to the HBM copy rate. See NOTES.md
// for the byte counts, the roofline and the measured numbers.
//
// Quantised types (Q8_0, IQ2_XXS, Q2_K, Q4_K) with int8 activations (q8_0 / q8_k, as
// ggml's CPU backend pairs them), in three steps per warp and chunk of a row:
//   1. stream: the chunk's bytes (up to 4096 weights) come in as one bulk copy (TMA) when
//      the call's chunk spans are 16-byte aligned (every DS4 shape), else as coalesced
//      16-byte loads (head/tail as 2-byte loads, so nothing outside the tensor is read),
//      issued one chunk ahead of the compute so a warp always has a chunk in flight;
//   2. stage: the lanes store them to a per-warp shared-memory buffer. GGUF blocks are
//      only 2-byte aligned (34/66/84/144-byte strides); from shared memory a lane reads
//      its block with aligned 4-byte loads and funnel shifts, where bank conflicts stay
//      low even at a 34-byte lane stride (global loads at that stride waste L1 wavefronts);
//   3. compute: each lane owns 32-weight runs; int8 dot products (dp4a) against
//      activations held in registers (loaded once per warp when a row is one chunk).
// IQ2_XXS looks up its grid and sign masks in shared-memory tables replicated 16 times so
// that the 16 lanes of a half-warp never share a bank pair (random 8-byte lookups would
// otherwise cost ~3x the wavefronts).
//
// F16 / F32: 16-byte loads, f32 FMAs with f32 activations; rows of 256-4096 F16 columns
// go several whole rows per warp item (8 KiB in flight per warp), other shapes a warp per row.
// overlap_prev (programmatic dependent launch): every kernel waits for the previous one
// before it reads x or ids or writes y; dense calls fetch their first weights before that.
// Generic (.xf32): any dequantisable type; each lane decodes 32-element runs with the exact
// decoders of decode.cuh and uses f32 FMAs. Correct everywhere, tuned nowhere.
#include <algorithm>
#include <map>
#include <mutex>
#include <utility>

#include "ops/core/pdl.cuh"
#include "ops/core/smem_opt_in.cuh"
#include "ops/quant/decode.cuh"
#include "ops/quant/quant_cuda.h"

namespace fp::cuda {

namespace detail {
void upload_matvec_tables() { upload_iq_tables(); }
}  // namespace detail

namespace {

using namespace dev;

constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;

// ---- device helpers ----------------------------------------------------------------

// Weights are read once per token: keep them out of L1, which holds the activations.
__device__ __forceinline__ uint4 ldg_stream(const void* p) {
  uint4 r;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
      : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
      : "l"(p));
  return r;
}

// N 32-bit values at byte offset off (2-aligned) of a 16-aligned shared buffer: N+1
// aligned loads and funnel shifts. Reads up to 4 bytes past the data (buffer slack).
template <int N>
__device__ __forceinline__ void lds_words(const uint8_t* buf, uint32_t off, uint32_t (&out)[N]) {
  const uint32_t* wp = reinterpret_cast<const uint32_t*>(buf) + (off >> 2);
  const uint32_t sh = (off & 2u) << 3;
  uint32_t w[N + 1];
#pragma unroll
  for (int i = 0; i <= N; ++i) w[i] = wp[i];
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = __funnelshift_r(w[i], w[i + 1], sh);
}

// N 32-bit values at a 4-aligned byte offset (kAlign: a multiple of 16 too, vector loads).
template <int N, int kAlign = 4>
__device__ __forceinline__ void lds_aligned(const uint8_t* buf, uint32_t off, uint32_t (&out)[N]) {
  if constexpr (kAlign == 16 && N % 4 == 0) {
#pragma unroll
    for (int i = 0; i < N / 4; ++i) {
      const uint4 v = reinterpret_cast<const uint4*>(buf + off)[i];
      out[4 * i] = v.x, out[4 * i + 1] = v.y, out[4 * i + 2] = v.z, out[4 * i + 3] = v.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < N; ++i) out[i] = reinterpret_cast<const uint32_t*>(buf + off)[i];
  }
}

__device__ __forceinline__ uint32_t lds_u16(const uint8_t* buf, uint32_t off) {
  return reinterpret_cast<const uint16_t*>(buf)[off >> 1];
}

// (a & mask) | c in one lop3: c's bits lie outside mask (a table replica's offset), which
// nvcc cannot prove, so written plainly it masks c too and spends a second instruction.
template <uint32_t kMask>
__device__ __forceinline__ uint32_t and_or(uint32_t a, uint32_t c) {
  uint32_t r;
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(r) : "r"(a), "n"(kMask), "r"(c));
  return r;
}

__device__ __forceinline__ int dp4a(uint32_t a, uint32_t b, int c) { return __dp4a(int(a), int(b), c); }
// Unsigned bytes of a times signed bytes of b: masked, unshifted quant fields (values
// q * 4^k) keep their sign bit out of the way; the sum is shifted back once.
__device__ __forceinline__ int dp4a_us(uint32_t a, uint32_t b, int c) {
  int r;
  asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
  return r;
}

constexpr float kNaN = __builtin_nanf("");

// Programmatic dependent launch (MatvecArgs::overlap_prev) through ops/core/pdl.cuh:
// before wait_prev_grid() a matvec reads weights only (no kernel writes them); it calls
// allow_next_grid() first, so the next kernel's launch overlaps this one's whole run.

// Pulls [p, p + n) into L2: one prefetch per 128-byte line, lanes side by side, every
// address inside the span. Used only for a warp's first weights while it waits for the
// previous kernel (overlap_prev): prefetching the next item in steady state was measured
// slower (H200: output head 133 -> 150 us), so the streaming loops do not.
__device__ __forceinline__ void prefetch_l2(const uint8_t* p, int64_t n, int lane) {
  if (n <= 0) return;
  for (int64_t o = int64_t(lane) * 128; o < n; o += 32 * 128) asm volatile("prefetch.global.L2 [%0];" ::"l"(p + o));
  if (lane == 0) asm volatile("prefetch.global.L2 [%0];" ::"l"(p + n - 1));  // the last line when p is not 128-aligned
}

struct Params {
  const uint8_t *w, *w2;  // w2: an optional second tensor of the same shape (gate + up)
  int64_t rows, row_bytes, matrix_bytes;
  int nb, chunks;          // blocks per row, chunks per row
  int rows_per_item;       // consecutive rows a warp streams as one chunk (short rows)
  int64_t groups;          // ceil(rows / rows_per_item)
  int pack;                // rows a warp computes side by side (rows of fewer than 32 units)
  int upr;                 // lanes per row: units per row when pack > 1, else 32
  const int32_t* ids;
  int n_experts, n_slots;
  const uint8_t* x;
  int64_t x_stride;  // activations between slots
  float *y, *y2;
  bool overlap;  // launched with MatvecArgs::overlap_prev
};

__device__ __forceinline__ int64_t item_count(const Params& p) {
  return int64_t(p.n_slots) * p.groups * (p.w2 ? 2 : 1);
}

// A work item: rows [row0, row0 + nrows) of one slot's matrix (of w or w2).
struct Item {
  const uint8_t* w;  // the slot's matrix; nullptr when its expert id is out of range
  float* y;          // the slot's outputs
  int64_t slot, row0;
  int nrows;
};

// The expert ids of slots 0..31, one per lane (read once per warp: a lookup per work item
// would put an L2 round trip in front of every chunk's loads). Warp-uniform call.
__device__ __forceinline__ int32_t warp_ids(const Params& p, int lane) {
  return p.ids && lane < p.n_slots ? p.ids[lane] : 0;
}

// Warp-uniform: every lane calls it with the same item (the id comes by shuffle).
__device__ __forceinline__ Item decode_item(const Params& p, int64_t item, int32_t ids) {
  const int64_t per = int64_t(p.n_slots) * p.groups;
  const bool second = item >= per;
  if (second) item -= per;
  Item it;
  // 32-bit division whenever it fits (always, in practice): 64-bit division is a long
  // instruction sequence, paid per work item.
  it.slot = per <= 0x7fffffff ? int64_t(uint32_t(item) / uint32_t(p.groups)) : item / p.groups;
  it.row0 = (item - it.slot * p.groups) * p.rows_per_item;
  it.nrows = int(min(int64_t(p.rows_per_item), p.rows - it.row0));
  int64_t mat = 0;
  if (p.ids) {
    const int id = p.n_slots <= 32 ? __shfl_sync(0xffffffffu, ids, int(it.slot)) : p.ids[it.slot];
    mat = id >= 0 && id < p.n_experts ? id : -1;
  }
  it.w = mat < 0 ? nullptr : (second ? p.w2 : p.w) + mat * p.matrix_bytes;
  it.y = (second ? p.y2 : p.y) + it.slot * p.rows;
  return it;
}

// ---- activations in registers -----------------------------------------------------

// 32 int8 activations of one run and their scale(s).
struct XRun {
  uint32_t q[8];
  float d;
  uint32_t bs;  // q8_k: bsums of the run's two 16-element halves (int16 each)
};

// q8_0 groups: [int8 q x 256][f16 d x 8] per 256 activations.
__device__ __forceinline__ void load_x_q8_0(const uint8_t* x, int64_t e, XRun& r) {
  const uint8_t* g = x + (e >> 8) * 272;
  const int w = int(e & 255);
  const uint4 a = __ldg(reinterpret_cast<const uint4*>(g + w)), b = __ldg(reinterpret_cast<const uint4*>(g + w + 16));
  r.q[0] = a.x, r.q[1] = a.y, r.q[2] = a.z, r.q[3] = a.w, r.q[4] = b.x, r.q[5] = b.y, r.q[6] = b.z, r.q[7] = b.w;
  r.d = h2f(__ldg(reinterpret_cast<const uint16_t*>(g + 256) + (w >> 5)));
  r.bs = 0;
}

// ---- per-type block dot products (one 32-weight run against its activations) --------

// Common shape: a lane owns units of kUnitElems weights (kRuns units per block), kU
// units per lane per chunk -> 32*kU units = 4096 weights per chunk of a row; K 16-byte
// vectors per lane hold one chunk in flight.
// kAsync: chunks land by cp.async in one of two shared buffers per warp (no registers hold
// a chunk in flight); kBalance: rows per work item chosen for the slowest warp.
template <int kBlockBytes_, int kRuns_, int kUnitElems_ = 32, int kU_ = 4, int kCap_ = 4608, bool kAsync_ = true,
          bool kBalance_ = true>
struct Shape {
  static constexpr int kBlockBytes = kBlockBytes_, kRuns = kRuns_, kUnitElems = kUnitElems_, kU = kU_;
  static constexpr int kChunkBlocks = 32 * kU / kRuns;
  static constexpr int kChunkElems = 32 * kU * kUnitElems;
  // A chunk is up to 4096 weights of one row, or up to kRMax whole short rows, within
  // kChunkBytes: ~4.5 KiB per warp in flight keeps ~70 KiB per SM in flight.
  static constexpr int kChunkBytes = kChunkBlocks * kBlockBytes > kCap_ ? kChunkBlocks * kBlockBytes : kCap_;
  static constexpr int K = (kChunkBytes / 16 + 31) / 32;
  static constexpr int kBufBytes = (kChunkBytes + 32 + 15) / 16 * 16;  // + alignment and over-read slack
  static constexpr bool kAsync = kAsync_, kBalance = kBalance_;
  static constexpr int kBuffers = kAsync ? 2 : 1;  // shared buffers per warp
};
constexpr int kRMax = 4;

// Q8_0 keeps one staging buffer per warp (chunks through registers) and the rows per item
// that keep >= 2 items per warp: cp.async and balanced rows cost its big products 10-11 %
// on an H100 (bench/results/h100-2026-12-07.md, decode matvec candidate ladder).
struct OpQ8_0 : Shape<34, 1, 32, 4, 4608, false, false> {
  using X = XRun;
  static constexpr bool kPackable = true;
  static constexpr int kTableBytes = 0;
  __device__ static void load_x(const uint8_t* x, int64_t e, XRun& r) { load_x_q8_0(x, e, r); }
  __device__ static float dot(const uint8_t* buf, uint32_t off, int, const XRun& x, const uint8_t*, int) {
    const float d = h2f(lds_u16(buf, off));
    uint32_t q[8];
    lds_words<8>(buf, off + 2, q);
    int s = 0;
#pragma unroll
    for (int i = 0; i < 8; ++i) s = dp4a(q[i], x.q[i], s);
    return d * x.d * float(s);
  }
};

// q8_k activations of n consecutive runs: q words, the block scale and 2n bsums.
template <int kRunsN>
struct XRunsK {
  uint32_t q[8 * kRunsN];
  float d;
  uint32_t bs[kRunsN];  // bsums of each run's two 16-element halves (int16 each)
};

template <int kRunsN>
__device__ __forceinline__ void load_x_q8_k_runs(const uint8_t* x, int64_t e, XRunsK<kRunsN>& r) {
  const uint8_t* b = x + (e >> 8) * 292;
  const int w = int(e & 255);
  r.d = __ldg(reinterpret_cast<const float*>(b));
  const uint32_t* q = reinterpret_cast<const uint32_t*>(b + 4 + w);
#pragma unroll
  for (int i = 0; i < 8 * kRunsN; ++i) r.q[i] = __ldg(q + i);
#pragma unroll
  for (int i = 0; i < kRunsN; ++i) r.bs[i] = __ldg(reinterpret_cast<const uint32_t*>(b + 260) + (w >> 5) + i);
}

// IQ2_XXS: 8-byte grid entries and 8-byte sign masks (0x00 / 0xff bytes) in shared-memory
// tables replicated 16 times (entry i of copy c at [16 i + c]: a half-warp never shares a
// bank pair).
struct OpIq2xxs : Shape<66, 8, 32, 4, 3168> {  // 3-row chunks: two buffers per warp + tables fit 2 CTAs/SM
  using X = XRunsK<1>;
  static constexpr bool kPackable = false;
  static constexpr int kTableBytes = 256 * 16 * 8 + 128 * 16 * 8;
  // The tables are a static __shared__ array, whose address is known at link time, so a
  // lookup's address is its offset alone (no per-lookup add of a base register).
  __device__ static uint8_t* tables() {
    __shared__ __align__(16) uint8_t t[kTableBytes];
    return t;
  }
  __device__ static void load_x(const uint8_t* x, int64_t e, X& r) { load_x_q8_k_runs<1>(x, e, r); }
  // Needs 256 threads and 3 KiB of scratch (the warp buffers, unused until after this).
  __device__ static void init_tables(uint8_t* scratch) {
    uint2* grid = reinterpret_cast<uint2*>(tables());
    uint2* sign = grid + 256 * 16;
    uint2* src = reinterpret_cast<uint2*>(scratch);  // [256 grid][128 sign]
    const int t = threadIdx.x;
    const uint64_t g = g_iq2xxs_grid[t];
    src[t] = make_uint2(uint32_t(g), uint32_t(g >> 32));
    if (t < 128) {
      const uint64_t m = g_sign_mask[t];
      src[256 + t] = make_uint2(uint32_t(m), uint32_t(m >> 32));
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < 16; ++j) grid[t + 256 * j] = src[(t + 256 * j) >> 4];  // consecutive: no bank conflicts
#pragma unroll
    for (int j = 0; j < 8; ++j) sign[t + 256 * j] = src[256 + ((t + 256 * j) >> 4)];
  }
  __device__ static float dot(const uint8_t* buf, uint32_t off, int g, const X& x, const uint8_t* smem, int lane) {
    const float d = h2f(lds_u16(buf, off));
    uint32_t aw[2];
    lds_words<2>(buf, off + 2 + 8 * g, aw);
    // Entry i of copy c sits at byte 128 i + 8 c (grid) and 32768 + 128 i + 8 c (signs):
    // the byte offset is one shift and one mask-or of the packed index (lop3), no multiply.
    // (G ^ M) negates the masked bytes in ones' complement (-g - 1); dp4a(M, x) = -sum of
    // the masked x, which puts back the missing +1s: s - n = sum_j sign_j * g_j * x_j.
    const uint32_t c8 = uint32_t(lane & 15) * 8;
    const uint8_t* tb = tables();
    int s = 0, n = 0;
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const uint32_t gi = and_or<0x7f80u>(l == 0 ? aw[0] << 7 : aw[0] >> (8 * l - 7), c8);
      const uint32_t si = and_or<0x3f80u>(l == 0 ? aw[1] << 7 : aw[1] >> (7 * l - 7), c8);
      const uint2 G = *reinterpret_cast<const uint2*>(tb + gi);
      const uint2 M = *reinterpret_cast<const uint2*>(tb + 32768 + si);
      s = dp4a(G.x ^ M.x, x.q[2 * l], s);
      s = dp4a(G.y ^ M.y, x.q[2 * l + 1], s);
      n = dp4a(M.x, x.q[2 * l], n);
      n = dp4a(M.y, x.q[2 * l + 1], n);
    }
    const int ls = 2 * int(aw[1] >> 28) + 1;  // (0.5 + s) * 0.25 = (2s + 1) / 8
    return d * x.d * 0.125f * float(ls * (s - n));
  }
};

__device__ __forceinline__ int lo16(uint32_t v) { return int(int16_t(v & 0xffff)); }
__device__ __forceinline__ int hi16(uint32_t v) { return int(int16_t(v >> 16)); }

// Q2_K: a unit is half a block (128 weights): the 32 qs bytes qs[32h .. 32h+31] feed
// four runs of 32 (bit pairs g = 0..3), so each lane loads them once for 128 weights.
struct OpQ2K : Shape<84, 2, 128, 1> {
  using X = XRunsK<4>;
  static constexpr bool kPackable = true;
  static constexpr int kTableBytes = 0;
  __device__ static void load_x(const uint8_t* x, int64_t e, X& r) { load_x_q8_k_runs<4>(x, e, r); }
  __device__ static float dot(const uint8_t* buf, uint32_t off, int h, const X& x, const uint8_t*, int) {
    uint32_t q[8], sc[2], dm[1];
    // 84-byte blocks of rows of 672k bytes from a 16-aligned base: every offset is 4-aligned.
    lds_aligned<8>(buf, off + 16 + 32 * h, q);
    lds_aligned<2>(buf, off + 8 * h, sc);
    lds_aligned<1>(buf, off + 80, dm);
    int s1 = 0, s2 = 0;
#pragma unroll
    for (int g = 0; g < 4; ++g) {
      const uint32_t mask = 0x03030303u << (2 * g);
      int i0 = 0, i1 = 0;
#pragma unroll
      for (int k = 0; k < 4; ++k) i0 = dp4a_us(q[k] & mask, x.q[8 * g + k], i0);
#pragma unroll
      for (int k = 4; k < 8; ++k) i1 = dp4a_us(q[k] & mask, x.q[8 * g + k], i1);
      const uint32_t sw = sc[g >> 1] >> (16 * (g & 1));  // scales[8h + 2g], scales[8h + 2g + 1]
      s1 += int(sw & 15) * (i0 >> (2 * g)) + int((sw >> 8) & 15) * (i1 >> (2 * g));
      s2 += int((sw >> 4) & 15) * lo16(x.bs[g]) + int((sw >> 12) & 15) * hi16(x.bs[g]);
    }
    return x.d * (h2f(dm[0]) * float(s1) - h2f(dm[0] >> 16) * float(s2));
  }
};

// Q4_K: a unit is 64 weights, sub-blocks 2c and 2c+1, which share the 32 qs bytes
// qs[32c .. 32c+31] (low and high nibbles).
struct OpQ4K : Shape<144, 4, 64, 2> {
  using X = XRunsK<2>;
  static constexpr bool kPackable = false;
  static constexpr int kTableBytes = 0;
  __device__ static void load_x(const uint8_t* x, int64_t e, X& r) { load_x_q8_k_runs<2>(x, e, r); }
  __device__ static uint32_t byte_of(const uint32_t (&h)[4], int i) {  // scales[i], i < 12
    const uint32_t w = i < 4 ? h[1] : (i < 8 ? h[2] : h[3]);
    return (w >> (8 * (i & 3))) & 255;
  }
  __device__ static void scale_min(const uint32_t (&h)[4], int j, int& sc, int& m) {
    if (j < 4) {
      sc = int(byte_of(h, j) & 63);
      m = int(byte_of(h, j + 4) & 63);
    } else {
      sc = int((byte_of(h, j + 4) & 15) | ((byte_of(h, j - 4) >> 6) << 4));
      m = int((byte_of(h, j + 4) >> 4) | ((byte_of(h, j) >> 6) << 4));
    }
  }
  __device__ static float dot(const uint8_t* buf, uint32_t off, int c, const X& x, const uint8_t*, int) {
    uint32_t h[4], q[8];
    // 144-byte blocks from a 16-aligned base: every block starts 16-aligned.
    lds_aligned<4, 16>(buf, off, h);
    lds_aligned<8, 16>(buf, off + 16 + 32 * c, q);
    int sc0, m0, sc1, m1;
    scale_min(h, 2 * c, sc0, m0);
    scale_min(h, 2 * c + 1, sc1, m1);
    int lo = 0, hi = 0;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      lo = dp4a(q[k] & 0x0f0f0f0fu, x.q[k], lo);
      hi = dp4a_us(q[k] & 0xf0f0f0f0u, x.q[8 + k], hi);
    }
    const int s1 = sc0 * lo + sc1 * (hi >> 4);
    const int s2 = m0 * (lo16(x.bs[0]) + hi16(x.bs[0])) + m1 * (lo16(x.bs[1]) + hi16(x.bs[1]));
    return x.d * (h2f(h[0]) * float(s1) - h2f(h[0] >> 16) * float(s2));
  }
};

// ---- the streaming kernel for quantised types -------------------------------------

// One chunk in flight: K 16-byte vectors per lane plus one 2-byte head/tail piece.
template <int K>
struct Chunk {
  uint4 v[K];
  uint32_t edge;
  uint32_t base_off, vec_off, tail_off;  // shared-buffer offsets (buffer mirrors src & 15)
  int nvec, nhead, ntail, units, nrows;
  bool valid;
  int64_t slot, row0;
  float* y;
};

__device__ __forceinline__ void cp_async16(uint8_t* dst, const void* src) {
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;" ::: "memory"); }

// Bulk copies (sm_90's TMA engine, one instruction for a whole chunk) for calls whose
// chunk spans all start and end 16-byte aligned (launch_q picks matvec_q<Op, true>): one
// lane issues the copy, an mbarrier per warp buffer counts its bytes in, and the lanes
// wait on its phase. (The GPU tests' shapes take both paths: rows of 1056 or 672 bytes
// bulk, of 66 bytes or with a 66-byte last chunk per-lane.)
// Against cp.async this drops each lane's per-chunk address arithmetic, its predicated
// 16-byte copies and the 2-byte head/tail pieces.
__device__ __forceinline__ uint32_t smem_u32(const void* p) { return uint32_t(__cvta_generic_to_shared(p)); }
__device__ __forceinline__ void mbar_init(uint64_t* bar) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_u32(bar)) : "memory");
  asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
// After the warp's earlier reads of dst (ordered by __syncwarp): the proxy fence puts
// them before the copy engine's writes.
__device__ __forceinline__ void bulk_copy(uint8_t* dst, const void* src, uint32_t bytes, uint64_t* bar) {
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
  asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(smem_u32(dst)),
               "l"(src), "r"(bytes), "r"(smem_u32(bar))
               : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
        : "=r"(done)
        : "r"(smem_u32(bar)), "r"(parity)
        : "memory");
  } while (!done);
}
// The two mbarriers of each warp (bulk calls only).
__device__ __forceinline__ uint64_t* warp_bars(int warp) {
  __shared__ __align__(8) uint64_t bars[kWarps * 2];
  return bars + 2 * warp;
}

// dst: the shared buffer the vectors go to straight away (cp.async, bulk); nullptr: into c.v.
// kBulk: one bulk copy counted in by bar (every span of the call is 16-byte aligned).
template <class Op, bool kBulk>
__device__ __forceinline__ void issue(Chunk<Op::K>& c, const Params& p, int32_t ids, int64_t item, int chunk, int lane,
                                      uint8_t* dst, uint64_t* bar) {
  const Item it = decode_item(p, item, ids);
  c.valid = it.w != nullptr;
  c.slot = it.slot;
  c.row0 = it.row0;
  c.nrows = it.nrows;
  c.y = it.y;
  c.nvec = c.nhead = c.ntail = c.units = 0;
  c.base_off = c.vec_off = c.tail_off = 0;
  if (!c.valid) return;
  const int blk0 = chunk * Op::kChunkBlocks;
  const int nblk = min(Op::kChunkBlocks, p.nb - blk0);
  c.units = nblk * Op::kRuns;
  // Whole rows are contiguous, so a chunk of several short rows is one span.
  const uintptr_t src = reinterpret_cast<uintptr_t>(it.w + it.row0 * p.row_bytes) + uintptr_t(blk0) * Op::kBlockBytes;
  const uintptr_t end = src + uintptr_t(it.nrows - 1) * uintptr_t(p.row_bytes) + uintptr_t(nblk) * Op::kBlockBytes;
  if constexpr (kBulk) {
    if (lane == 0) bulk_copy(dst, reinterpret_cast<const void*>(src), uint32_t(end - src), bar);
    return;
  }
  const uintptr_t floor16 = src & ~uintptr_t(15);
  uintptr_t a0 = (src + 15) & ~uintptr_t(15);
  if (a0 > end) a0 = end;
  uintptr_t a1 = end & ~uintptr_t(15);
  if (a1 < a0) a1 = a0;
  c.base_off = uint32_t(src - floor16);
  c.vec_off = uint32_t(a0 - floor16);
  c.tail_off = uint32_t(a1 - floor16);
  c.nhead = int(a0 - src) / 2;
  c.nvec = int(a1 - a0) / 16;
  c.ntail = int(end - a1) / 2;
#pragma unroll
  for (int k = 0; k < Op::K; ++k) {
    const int i = lane + 32 * k;
    if (i < c.nvec) {
      if (Op::kAsync) cp_async16(dst + c.vec_off + 16 * i, reinterpret_cast<const uint4*>(a0) + i);
      else c.v[k] = ldg_stream(reinterpret_cast<const uint4*>(a0) + i);
    }
  }
  if (Op::kAsync) cp_async_commit();
  if (lane < c.nhead) c.edge = ld_u16(reinterpret_cast<const uint8_t*>(src) + 2 * lane);
  else if (lane >= 8 && lane - 8 < c.ntail) c.edge = ld_u16(reinterpret_cast<const uint8_t*>(a1) + 2 * (lane - 8));
}

template <class Op, int K>
__device__ __forceinline__ void stage(const Chunk<K>& c, uint8_t* buf, int lane) {
#pragma unroll
  for (int k = 0; k < (Op::kAsync ? 0 : K); ++k) {
    const int i = lane + 32 * k;
    if (i < c.nvec) reinterpret_cast<uint4*>(buf + c.vec_off)[i] = c.v[k];
  }
  if (lane < c.nhead) reinterpret_cast<uint16_t*>(buf + c.base_off)[lane] = uint16_t(c.edge);
  else if (lane >= 8 && lane - 8 < c.ntail) reinterpret_cast<uint16_t*>(buf + c.tail_off)[lane - 8] = uint16_t(c.edge);
}


template <class Op>
__device__ __forceinline__ float row_dot(const uint8_t* buf, uint32_t off, int units, int my_unit,
                                         const typename Op::X (&xr)[Op::kU], const uint8_t* smem, int lane) {
  if (units >= 32 * Op::kU) {  // every lane has all its units: no guards, so the dots interleave
    float d[Op::kU];
#pragma unroll
    for (int k = 0; k < Op::kU; ++k) {
      const int u = my_unit + 32 * k;
      d[k] = Op::dot(buf, off + uint32_t(u / Op::kRuns) * Op::kBlockBytes, u % Op::kRuns, xr[k], smem, lane);
    }
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < Op::kU; ++k) s += d[k];
    return s;
  }
  float s = 0.0f;
#pragma unroll
  for (int k = 0; k < Op::kU; ++k) {
    const int u = my_unit + 32 * k;
    if (u < units) s += Op::dot(buf, off + uint32_t(u / Op::kRuns) * Op::kBlockBytes, u % Op::kRuns, xr[k], smem, lane);
  }
  return s;
}

template <class Op, bool kBulk>
__global__ void __launch_bounds__(kThreads, 2) matvec_q(Params p) {
  extern __shared__ __align__(16) uint8_t smem[];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  uint8_t* const bufs = smem + warp * Op::kBuffers * Op::kBufBytes;
  int cur = 0;  // the buffer the next chunk lands in (Op::kAsync)
  uint64_t* const bars = kBulk ? warp_bars(warp) : nullptr;  // buffer cur's copy counts in at bars[cur]
  uint32_t phase = 0;                                        // bit b: the parity buffer b's next copy completes
  if constexpr (kBulk) {
    if (lane == 0) mbar_init(bars), mbar_init(bars + 1);
    __syncwarp();
  }
  // Per-slot activations: each warp takes a contiguous run of items, which mostly share a
  // slot, so activations are reloaded only when the slot changes. Shared activations:
  // warps stride through the items, so the whole grid streams neighbouring rows (DRAM
  // page locality: ~5% on the output head).
  const int64_t nw = int64_t(gridDim.x) * kWarps, gw = int64_t(blockIdx.x) * kWarps + warp;
  const bool runs = p.x_stride != 0;
  const int64_t per_warp = (item_count(p) + nw - 1) / nw;
  int64_t item = runs ? gw * per_warp : gw;
  const int64_t items = runs ? min(item_count(p), item + per_warp) : item_count(p);
  const int64_t step = runs ? 1 : nw;
  int chunk = 0;
  Chunk<Op::K> c;
  // The first chunk is in flight while the tables fill and, for dense calls (weights only),
  // while the previous kernel finishes (overlap_prev); overlapped expert-indexed calls
  // wait for it first: it may be the one writing the ids.
  const bool early = p.ids == nullptr || !p.overlap;
  int32_t ids = early ? warp_ids(p, lane) : 0;
  if (early && item < items) issue<Op, kBulk>(c, p, ids, item, 0, lane, bufs, bars);
  allow_next_grid();
  if constexpr (Op::kTableBytes > 0) {
    // Scratch: the last warp's last buffer, which nothing writes before this returns.
    Op::init_tables(smem + (kWarps * Op::kBuffers - 1) * Op::kBufBytes);
    __syncthreads();
  }
  wait_prev_grid();
  if (!early) {
    ids = warp_ids(p, lane);
    if (item < items) issue<Op, kBulk>(c, p, ids, item, 0, lane, bufs, bars);
  }
  typename Op::X xr[Op::kU];
  int64_t xkey = -1;
  float acc[kRMax];
#pragma unroll
  for (int r = 0; r < kRMax; ++r) acc[r] = 0.0f;
  const uint32_t row_bytes = uint32_t(p.row_bytes);  // rows of a multi-row chunk fit in it
  while (item < items) {
    const int cur_chunk = chunk;
    const bool valid = c.valid;
    const int units = c.units, nrows = c.nrows;
    const uint32_t base = c.base_off;
    const int64_t slot = c.slot, row0 = c.row0;
    float* const y = c.y;
    // Activations first, so that their (L2) loads overlap the chunk's (HBM) loads.
    // Packed rows (pack > 1): a row has units < 32 units; lane = (row in pass) * units + unit.
    const int upr = Op::kPackable ? p.upr : 32;  // folds away for types that never pack
    const int my_unit = lane & (upr - 1), my_row = lane / upr;
    const int64_t key = (p.x_stride ? slot : 0) * p.chunks + cur_chunk;
    if (valid && key != xkey) {  // the same columns for every row: they stay in registers
      xkey = key;
      const int64_t e0 = slot * p.x_stride + int64_t(cur_chunk) * Op::kChunkElems;
#pragma unroll
      for (int k = 0; k < Op::kU; ++k) {
        const int u = my_unit + 32 * k;
        if (u < units) Op::load_x(p.x, e0 + int64_t(Op::kUnitElems) * u, xr[k]);
      }
    }
    uint8_t* const buf = bufs + cur * Op::kBufBytes;
    if constexpr (kBulk) {
      if (valid) {
        mbar_wait(bars + cur, (phase >> cur) & 1u);
        phase ^= 1u << cur;
      }
    } else {
      if (Op::kAsync) cp_async_wait_all();
      __syncwarp();
      stage<Op>(c, buf, lane);
    }
    __syncwarp();
    if (++chunk == p.chunks) {
      chunk = 0;
      item += step;
    }
    cur = Op::kBuffers - 1 - cur;
    if (item < items) issue<Op, kBulk>(c, p, ids, item, chunk, lane, bufs + cur * Op::kBufBytes, bars + cur);  // in flight during compute

    {
      const int pack = Op::kPackable ? p.pack : 1;
      const bool last = cur_chunk == p.chunks - 1;
#pragma unroll 1
      for (int j = 0; pack * j < nrows; ++j) {
        const int r = my_row + pack * j;
        float a = j == 0 ? acc[0] : 0.0f;  // a row of several chunks (then nrows == 1) carries acc[0]
        if (valid && r < nrows) a += row_dot<Op>(buf, base + uint32_t(r) * row_bytes, units, my_unit, xr, smem, lane);
        if (last) {
          for (int o = upr >> 1; o > 0; o >>= 1) a += __shfl_xor_sync(0xffffffffu, a, o);
          if (my_unit == 0 && r < nrows) y[row0 + r] = valid ? a : kNaN;
          a = 0.0f;
        }
        if (j == 0) acc[0] = a;
      }
    }
  }
}

// ---- F16 / F32 weights, f32 activations ---------------------------------------------

template <DType T>
__global__ void __launch_bounds__(kThreads) matvec_float(Params p, int64_t cols, bool vec) {
  constexpr int kPer = T == DType::F16 ? 8 : 4;  // elements per 16-byte vector
  constexpr int kUnroll = 8;                     // 4 KiB of a row in flight per warp
  const int lane = threadIdx.x & 31;
  const int64_t items = item_count(p);  // rows_per_item == 1
  const int64_t nw = int64_t(gridDim.x) * kWarps;
  const int64_t first = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (p.overlap && !p.ids && first < items) {
    const Item it = decode_item(p, first, 0);  // dense: no ids
    prefetch_l2(it.w + it.row0 * p.row_bytes, p.row_bytes, lane);
  }
  allow_next_grid();
  wait_prev_grid();
  const int32_t ids = warp_ids(p, lane);
  for (int64_t item = first; item < items; item += nw) {
    const Item it = decode_item(p, item, ids);
    float acc = 0.0f;
    if (it.w) {
      const uint8_t* wr = it.w + it.row0 * p.row_bytes;
      const float* xs = reinterpret_cast<const float*>(p.x) + it.slot * p.x_stride;
      const int64_t nv = vec ? cols / kPer : 0;
      for (int64_t v0 = lane; v0 < nv; v0 += 32 * kUnroll) {
        uint4 w[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u)
          if (v0 + 32 * u < nv) w[u] = ldg_stream(wr + 16 * (v0 + 32 * u));
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          const int64_t v = v0 + 32 * u;
          if (v >= nv) break;
          const float4* xv = reinterpret_cast<const float4*>(xs + kPer * v);
          if constexpr (T == DType::F16) {
            const float4 a = __ldg(xv), b = __ldg(xv + 1);
            const __half2* h = reinterpret_cast<const __half2*>(&w[u]);
            const float2 f0 = __half22float2(h[0]), f1 = __half22float2(h[1]), f2 = __half22float2(h[2]), f3 = __half22float2(h[3]);
            acc += f0.x * a.x + f0.y * a.y + f1.x * a.z + f1.y * a.w + f2.x * b.x + f2.y * b.y + f3.x * b.z + f3.y * b.w;
          } else {
            const float4 a = __ldg(xv);
            acc += __uint_as_float(w[u].x) * a.x + __uint_as_float(w[u].y) * a.y + __uint_as_float(w[u].z) * a.z +
                   __uint_as_float(w[u].w) * a.w;
          }
        }
      }
      for (int64_t e = nv * kPer + lane; e < cols; e += 32) {
        const float wv = T == DType::F16 ? h2f(ld_u16(wr + 2 * e)) : reinterpret_cast<const float*>(wr)[e];
        acc += wv * xs[e];
      }
    }
    acc = warp_sum(acc);
    if (lane == 0) it.y[it.row0] = it.w ? acc : kNaN;
  }
}

// Rows of exactly 32 * kUpl 16-byte vectors (F16: 256 .. 4096 columns): a warp streams
// kRows = 16 / kUpl whole rows per item, 16 vectors per lane (8 KiB per warp) issued at
// once, so that a short call has nearly all its bytes in flight in its first round trip
// (the row-at-a-time loop above waits one HBM latency per 4 KiB). Each lane's activations
// are loaded once per item and reused across its rows.
template <DType T, int kUpl>
__global__ void __launch_bounds__(kThreads, 2) matvec_float_rows(Params p) {
  constexpr int kPer = T == DType::F16 ? 8 : 4;  // elements per 16-byte vector
  constexpr int kV = 16, kRows = kV / kUpl;
  const int lane = threadIdx.x & 31;
  const int64_t items = item_count(p);  // rows_per_item == kRows
  const int64_t nw = int64_t(gridDim.x) * kWarps;
  const int64_t first = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (p.overlap && !p.ids && first < items) {
    const Item it = decode_item(p, first, 0);  // dense: no ids
    prefetch_l2(it.w + it.row0 * p.row_bytes, it.nrows * p.row_bytes, lane);
  }
  allow_next_grid();
  wait_prev_grid();
  const int32_t ids = warp_ids(p, lane);
  for (int64_t item = first; item < items; item += nw) {
    const Item it = decode_item(p, item, ids);
    float acc[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r] = 0.0f;
    if (it.w) {
      const uint4* wr = reinterpret_cast<const uint4*>(it.w + it.row0 * p.row_bytes);
      const float* xs = reinterpret_cast<const float*>(p.x) + it.slot * p.x_stride;
      uint4 w[kV];
#pragma unroll
      for (int u = 0; u < kV; ++u)  // vector 32 u + lane of the item: row u / kUpl
        if (u / kUpl < it.nrows) w[u] = ldg_stream(wr + 32 * u + lane);
#pragma unroll
      for (int c = 0; c < kUpl; ++c) {
        const float4* xv = reinterpret_cast<const float4*>(xs + kPer * (32 * c + lane));
        if constexpr (T == DType::F16) {
          const float4 a = __ldg(xv), b = __ldg(xv + 1);
#pragma unroll
          for (int r = 0; r < kRows; ++r) {
            if (r >= it.nrows) break;
            const __half2* h = reinterpret_cast<const __half2*>(&w[r * kUpl + c]);
            const float2 f0 = __half22float2(h[0]), f1 = __half22float2(h[1]), f2 = __half22float2(h[2]),
                         f3 = __half22float2(h[3]);
            acc[r] += f0.x * a.x + f0.y * a.y + f1.x * a.z + f1.y * a.w + f2.x * b.x + f2.y * b.y + f3.x * b.z + f3.y * b.w;
          }
        } else {
          const float4 a = __ldg(xv);
#pragma unroll
          for (int r = 0; r < kRows; ++r) {
            if (r >= it.nrows) break;
            const uint4 v = w[r * kUpl + c];
            acc[r] += __uint_as_float(v.x) * a.x + __uint_as_float(v.y) * a.y + __uint_as_float(v.z) * a.z +
                      __uint_as_float(v.w) * a.w;
          }
        }
      }
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (r >= it.nrows) break;
      const float v = warp_sum(acc[r]);
      if (lane == 0) it.y[it.row0 + r] = it.w ? v : kNaN;
    }
  }
}

// ---- generic: exact decoders + f32 FMAs ---------------------------------------------

template <DType T>
__device__ __forceinline__ void run32(const uint8_t* wr, int64_t r, float* y) {
  if constexpr (T == DType::BF16) {
#pragma unroll
    for (int j = 0; j < 32; ++j) y[j] = bf2f(ld_u16(wr + 64 * r + 2 * j));
  } else if constexpr (T == DType::F16) {
#pragma unroll
    for (int j = 0; j < 32; ++j) y[j] = h2f(ld_u16(wr + 64 * r + 2 * j));
  } else if constexpr (T == DType::F32) {
#pragma unroll
    for (int j = 0; j < 32; ++j) y[j] = reinterpret_cast<const float*>(wr)[32 * r + j];
  } else {
    decode32<T>(wr + (r / kRuns<T>) * kBlockBytes<T>, int(r % kRuns<T>), y);
  }
}

template <DType T>
__global__ void __launch_bounds__(kThreads) matvec_generic(Params p, int64_t cols) {
  const int lane = threadIdx.x & 31;
  const int64_t items = item_count(p);  // rows_per_item == 1
  const int64_t nw = int64_t(gridDim.x) * kWarps;
  const int64_t runs = cols / 32;
  allow_next_grid();
  wait_prev_grid();
  const int32_t ids = warp_ids(p, lane);
  for (int64_t item = int64_t(blockIdx.x) * kWarps + (threadIdx.x >> 5); item < items; item += nw) {
    const Item it = decode_item(p, item, ids);
    float acc = 0.0f;
    if (it.w) {
      const uint8_t* wr = it.w + it.row0 * p.row_bytes;
      const float* xs = reinterpret_cast<const float*>(p.x) + it.slot * p.x_stride;
      for (int64_t r = lane; r < runs; r += 32) {
        float y[32];
        run32<T>(wr, r, y);
        const float4* xv = reinterpret_cast<const float4*>(xs + 32 * r);
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          const float4 a = __ldg(xv + i);
          acc += y[4 * i] * a.x + y[4 * i + 1] * a.y + y[4 * i + 2] * a.z + y[4 * i + 3] * a.w;
        }
      }
    }
    acc = warp_sum(acc);
    if (lane == 0) it.y[it.row0] = it.w ? acc : kNaN;
  }
}

// ---- launchers --------------------------------------------------------------------

// Resident CTAs per SM for a kernel (cached per device), and the opt-in to more than
// 48 KiB of dynamic shared memory.
int resident_ctas(const void* fn, int smem) {
  static std::mutex mu;
  static std::map<std::pair<const void*, int>, int> cache;
  const int dev = current_device();
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find({fn, dev});
  if (it != cache.end()) return it->second;
  opt_in_smem(fn, size_t(smem), "matvec");
  int n = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, fn, kThreads, smem), "matvec occupancy");
  if (n < 1) fail("internal: matvec kernel cannot be resident (", smem, " bytes of shared memory)");
  cache[{fn, dev}] = n;
  return n;
}

int grid_for(const void* fn, int smem, int64_t items) {
  const int64_t want = (items + kWarps - 1) / kWarps;
  const int64_t cap = int64_t(resident_ctas(fn, smem)) * sm_count();
  return int(want < cap ? want : cap);
}

int64_t host_items(const Params& p) { return int64_t(p.n_slots) * p.groups * (p.w2 ? 2 : 1); }

// Every matvec launch: plain, or with programmatic stream serialization (overlap_prev),
// through the one launch helper (ops/core/pdl.cuh).
template <typename... KArgs, typename... Args>
void launch(void (*kernel)(KArgs...), int grid, int smem, bool overlap, Stream s, Args... args) {
  launch_kernel(kernel, unsigned(grid), kThreads, size_t(smem), Launch{s, overlap}, "matvec", args...);
}

template <class Op>
void launch_q(const Params& p, bool overlap, Stream s) {
  constexpr int smem = kWarps * Op::kBuffers * Op::kBufBytes;
  Params q = p;
  q.chunks = (p.nb + Op::kChunkBlocks - 1) / Op::kChunkBlocks;
  // Bulk copies when every chunk's span starts and ends 16-byte aligned: whole-row spans
  // (row_bytes), full chunks of a long row and its last, shorter one.
  const int64_t last_chunk_bytes = int64_t(p.nb - (q.chunks - 1) * Op::kChunkBlocks) * Op::kBlockBytes;
  const bool bulk = Op::kAsync && aligned(p.w, 16) && (!p.w2 || aligned(p.w2, 16)) && p.row_bytes % 16 == 0 &&
                    (Op::kChunkBlocks * Op::kBlockBytes) % 16 == 0 && last_chunk_bytes % 16 == 0;
  auto kernel = &matvec_q<Op, false>;
  if constexpr (Op::kAsync) {
    if (bulk) kernel = &matvec_q<Op, true>;
  }
  const void* fn = reinterpret_cast<const void*>(kernel);
  // Short rows: stream several whole rows per chunk (they are contiguous), but only while
  // there are still about two work items per resident warp to spread the compute.
  q.rows_per_item = 1;
  q.pack = 1;
  const int64_t upr = int64_t(p.nb) * Op::kRuns;  // units per row
  if (Op::kPackable && q.chunks == 1 && upr < 32 && 32 % upr == 0) q.pack = int(32 / upr);
  q.upr = q.pack > 1 ? int(upr) : 32;
  if (q.chunks == 1) q.rows_per_item = int(std::clamp<int64_t>(Op::kChunkBytes / p.row_bytes, 1, q.pack * kRMax));
  const int64_t warps = int64_t(resident_ctas(fn, smem)) * sm_count() * kWarps;
  auto items_for = [&](int r) { return int64_t(q.n_slots) * ((q.rows + r - 1) / r) * (q.w2 ? 2 : 1); };
  if constexpr (Op::kBalance) {
    // The slowest warp streams ceil(items / warps) items of r rows: pick the r that makes
    // that smallest (ties: the larger r, fewer and larger chunks).
    int best = q.rows_per_item;
    int64_t best_cost = (items_for(best) + warps - 1) / warps * best;
    for (int r = best - 1; r >= 1; --r) {
      const int64_t cost = (items_for(r) + warps - 1) / warps * r;
      if (cost < best_cost) best = r, best_cost = cost;
    }
    q.rows_per_item = best;
  } else {
    while (q.rows_per_item > 1 && items_for(q.rows_per_item) < 2 * warps) --q.rows_per_item;
  }
  q.groups = (p.rows + q.rows_per_item - 1) / q.rows_per_item;
  launch(kernel, grid_for(fn, smem, host_items(q)), smem, overlap, s, q);
}

template <DType T>
void launch_float(const Params& p, int64_t cols, bool overlap, Stream s) {
  const void* fn = reinterpret_cast<const void*>(&matvec_float<T>);
  const int64_t per = T == DType::F16 ? 8 : 4;
  const bool vec = cols % per == 0 && aligned(p.w, 16) && (!p.w2 || aligned(p.w2, 16)) && aligned(p.x, 16) &&
                   p.x_stride % 4 == 0;
  const int64_t nv = cols / per;
  if (vec && nv % 32 == 0 && nv <= 512 && ((nv / 32) & (nv / 32 - 1)) == 0) {
    auto rows = [&](auto kernel, int upl) {
      Params q = p;
      q.rows_per_item = 16 / upl;
      q.groups = (p.rows + q.rows_per_item - 1) / q.rows_per_item;
      launch(kernel, grid_for(reinterpret_cast<const void*>(kernel), 0, host_items(q)), 0, overlap, s, q);
    };
    switch (nv / 32) {
      case 1: rows(&matvec_float_rows<T, 1>, 1); break;
      case 2: rows(&matvec_float_rows<T, 2>, 2); break;
      case 4: rows(&matvec_float_rows<T, 4>, 4); break;
      case 8: rows(&matvec_float_rows<T, 8>, 8); break;
      default: rows(&matvec_float_rows<T, 16>, 16); break;
    }
    return;
  }
  launch(&matvec_float<T>, grid_for(fn, 0, host_items(p)), 0, overlap, s, p, cols, vec);
}

template <DType T>
void launch_generic(const Params& p, int64_t cols, bool overlap, Stream s) {
  const void* fn = reinterpret_cast<const void*>(&matvec_generic<T>);
  launch(&matvec_generic<T>, grid_for(fn, 0, host_items(p)), 0, overlap, s, p, cols);
}

}  // namespace

void matvec(const MatvecArgs& a, Stream s) {
  const char* what = "cuda matvec";
  if (!matvec_supported(a.type, a.xf32))
    fail(what, ": weight type ", dtype_name(a.type), a.xf32 ? " with f32 activations" : "", " is not supported");
  const int64_t block = traits(a.type).block;
  if (a.rows <= 0 || a.cols <= 0) fail(what, ": shape [", a.rows, ", ", a.cols, "], expected positive sizes");
  if (a.cols % block != 0) fail(what, ": ", a.cols, " columns of ", dtype_name(a.type), ", expected a multiple of ", block);
  if (!a.w || !a.x || !a.y) fail(what, ": null weight, activation or output pointer");
  if (a.n_slots < 1) fail(what, ": ", a.n_slots, " slots, expected at least 1");
  if (a.ids && a.n_experts < 1) fail(what, ": expert-indexed call with ", a.n_experts, " experts");
  if (a.x_stride < 0) fail(what, ": negative activation stride");
  if (!aligned(a.w, 16) || !aligned(a.x, 16) || !aligned(a.y, 4))
    fail(what, ": weights and activations must be 16-byte aligned, outputs 4-byte aligned");
  if (bool(a.w2) != bool(a.y2)) fail(what, ": a second weight tensor needs its own outputs, and the other way round");
  if (a.w2 && (!aligned(a.w2, 16) || !aligned(a.y2, 4))) fail(what, ": second weight tensor misaligned");
  const ActFormat fmt = matvec_args_act_format(a);
  if (fmt == ActFormat::q8_k && a.cols % 256 != 0) fail(what, ": q8_k activations need a multiple of 256 columns, got ", a.cols);
  if (fmt != ActFormat::f32 && a.n_slots > 1 && a.x_stride % 256 != 0)
    fail(what, ": quantised activations per slot need a stride that is a multiple of 256, got ", a.x_stride);
  if (fmt == ActFormat::f32 && a.type != DType::F16 && a.type != DType::F32 && a.cols % 32 != 0)
    fail(what, ": ", a.cols, " columns of ", dtype_name(a.type), ", expected a multiple of 32");
  upload_iq_tables();

  Params p{};
  p.w = static_cast<const uint8_t*>(a.w);
  p.w2 = static_cast<const uint8_t*>(a.w2);
  p.rows = a.rows;
  p.rows_per_item = 1;
  p.groups = a.rows;
  p.pack = 1;
  p.upr = 32;
  p.row_bytes = row_bytes(a.type, a.cols);
  p.matrix_bytes = p.row_bytes * a.rows;
  p.nb = int(a.cols / block);
  p.chunks = 1;
  p.ids = a.ids;
  p.n_experts = a.ids ? a.n_experts : 1;
  p.n_slots = a.n_slots;
  p.x = static_cast<const uint8_t*>(a.x);
  p.x_stride = a.n_slots > 1 ? a.x_stride : 0;
  p.y = a.y;
  p.y2 = a.y2;
  p.overlap = a.overlap_prev;

  const bool is_float = a.type == DType::F16 || a.type == DType::F32;
  const bool has_fast = is_float || a.type == DType::Q8_0 || a.type == DType::IQ2_XXS || a.type == DType::Q2_K ||
                        a.type == DType::Q4_K;
  if (has_fast && (!a.xf32 || is_float)) {
    switch (a.type) {
      case DType::Q8_0: launch_q<OpQ8_0>(p, a.overlap_prev, s); break;
      case DType::IQ2_XXS: launch_q<OpIq2xxs>(p, a.overlap_prev, s); break;
      case DType::Q2_K: launch_q<OpQ2K>(p, a.overlap_prev, s); break;
      case DType::Q4_K: launch_q<OpQ4K>(p, a.overlap_prev, s); break;
      case DType::F16: launch_float<DType::F16>(p, a.cols, a.overlap_prev, s); break;
      default: launch_float<DType::F32>(p, a.cols, a.overlap_prev, s); break;
    }
  } else {
    switch (a.type) {
#define FP_GEN(T) case DType::T: launch_generic<DType::T>(p, a.cols, a.overlap_prev, s); break;
      FP_GEN(Q4_0) FP_GEN(Q8_0) FP_GEN(Q2_K) FP_GEN(Q4_K) FP_GEN(Q5_K) FP_GEN(Q6_K)
      FP_GEN(IQ2_XXS) FP_GEN(IQ2_XS) FP_GEN(IQ3_XXS) FP_GEN(BF16)
#undef FP_GEN
      default: fail("internal: matvec dispatch for ", dtype_name(a.type));
    }
  }
}

}  // namespace fp::cuda
