// CUDA kernels of the hyper-connection family (see hc_cuda.h). The flat norm and the mix
// product are one split-K kernel (a decode step spreads over many blocks); the gates and
// Sinkhorn work on hc² values per token, one lane each, in double and in the CPU
// reference's order of additions; the collapse and post spread over the block.
#include <algorithm>

#include "ops/core/block_reduce.cuh"
#include "ops/core/pdl.cuh"
#include "ops/hc/hc_cuda.h"
#include "ops/quant/cuda_common.cuh"

namespace fp::cuda {
namespace {

constexpr int kMaxHc = 8;  // streams a kernel supports (DS4: 4)

// ---- kernels ------------------------------------------------------------------------
// Each kernel opens with the PDL wait (ops/core/pdl.cuh): it may be launched while the
// previous kernel in the stream still runs.

__device__ __forceinline__ float table_value(DType t, const uint8_t* row, int64_t i) {
  switch (t) {
    case DType::F32: return reinterpret_cast<const float*>(row)[i];
    case DType::F16: return dev::h2f(dev::ld_u16(row + 2 * i));
    case DType::BF16: return dev::bf2f(dev::ld_u16(row + 2 * i));
    default: {  // Q8_0: blocks of [f16 d][int8 q x 32]
      const uint8_t* b = row + (i / 32) * 34;
      return dev::h2f(dev::ld_u16(b)) * float(int8_t(b[2 + i % 32]));
    }
  }
}

template <DType kT>
__device__ __forceinline__ float table_value_t(const uint8_t* row, int64_t i) {
  return table_value(kT, row, i);  // kT is a constant: the switch folds away
}

__global__ void embed_rows(DType type, const uint8_t* table, int64_t rows, int64_t row_bytes, const int32_t* tokens,
                           int64_t hc, int64_t dim, float* X, uint32_t* err) {
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const int64_t t = blockIdx.x;
  int64_t id = tokens[t];
  if (id < 0 || id >= rows) {
    if (threadIdx.x == 0 && err) atomicOr(err, kErrTokenRange);
    id = 0;
  }
  const uint8_t* row = table + id * row_bytes;
  for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
    const float v = table_value(type, row, d);
    for (int64_t i = 0; i < hc; ++i) X[(t * hc + i) * dim + d] = v;
  }
}

__device__ __forceinline__ double sigmoid(double z) { return 1.0 / (1.0 + exp(-z)); }

// The flat RMSNorm and the mix product, fused and split over K: the norm is a scalar per
// token, so mix[r] = (fn[r] · X) * rsqrt(mean(X²) + eps). Block (slice, token tile) writes
// the slice's partial dots and sum of squares, partial[t][slice][0..M) and [M]; the tail
// kernels add the slices in order. A decode step (one token) thus spreads over
// up to kMaxMixSlices blocks instead of one block per token.
constexpr int kMaxMixSlices = 64;
constexpr int kMixTokens = 4;
constexpr int kMixThreads = 256;
constexpr int kMixUnroll = 8;  // loads in flight per lane and row (a decode step is latency-bound)

template <DType kT>
__global__ void mix_partial(const float* X, int64_t n, const uint8_t* fn, int64_t fn_row_bytes, int64_t hd, int64_t M,
                            float* partial) {
  __shared__ double red[32];
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const int64_t slices = gridDim.x, slice = blockIdx.x, t0 = int64_t(blockIdx.y) * kMixTokens;
  const int64_t len = (hd + slices - 1) / slices, k0 = slice * len, k1 = hd < k0 + len ? hd : k0 + len;
  const int nt = n - t0 < kMixTokens ? int(n - t0) : kMixTokens;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = kMixThreads / 32;
  for (int64_t r = warp; r < M; r += warps) {
    const uint8_t* row = fn + r * fn_row_bytes;
    float acc[kMixTokens] = {};
    for (int64_t kb = k0 + lane; kb < k1; kb += 32 * kMixUnroll) {
      float f[kMixUnroll];
#pragma unroll
      for (int u = 0; u < kMixUnroll; ++u) {
        const int64_t k = kb + 32 * u;
        f[u] = k < k1 ? table_value_t<kT>(row, k) : 0.0f;
      }
#pragma unroll
      for (int i = 0; i < kMixTokens; ++i) {
        if (i >= nt) break;
        const float* x = X + (t0 + i) * hd;
#pragma unroll
        for (int u = 0; u < kMixUnroll; ++u) {
          const int64_t k = kb + 32 * u;
          if (k < k1) acc[i] += f[u] * x[k];
        }
      }
    }
    for (int i = 0; i < nt; ++i) {
      const float v = dev::warp_reduce_sum(acc[i]);
      if (lane == 0) partial[((t0 + i) * slices + slice) * (M + 1) + r] = v;
    }
  }
  for (int i = 0; i < nt; ++i) {
    double ss = 0;
#pragma unroll 4
    for (int64_t k = k0 + threadIdx.x; k < k1; k += kMixThreads) {
      const double x = X[(t0 + i) * hd + k];
      ss += x * x;
    }
    ss = dev::block_reduce_sum(ss, red);
    if (threadIdx.x == 0) partial[((t0 + i) * slices + slice) * (M + 1) + M] = float(ss);
  }
}

constexpr int kTailThreads = 256;  // the per-token tail kernels' block (finish_mix counts on it)

// Token t's mix values into mix_s[0..M), times the norm's scale. A warp per value (the M
// mix rows, then the sum of squares): lane l adds slices l and l + 32, a butterfly adds the
// lanes. Every load of the block is issued before any sum (one L2 round trip where the
// block once staged the partials in rounds and a thread added 64 slices in a chain); the
// order is fixed, and the same for every step size, so decode and prefill agree bit for
// bit. Contains __syncthreads().
__device__ void finish_mix(const float* partial, int slices, int64_t t, int64_t M, int64_t hd, float eps,
                           float* mix_s) {
  static_assert(kMaxMixSlices <= 64, "a lane adds at most two slices");
  constexpr int kWarps = kTailThreads / 32;
  constexpr int kPerWarp = ((2 + kMaxHc) * kMaxHc + 1 + kWarps - 1) / kWarps;  // values a warp takes, at most
  __shared__ float scale_s;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t stride = M + 1;
  const float* p = partial + t * slices * stride;
  float v[kPerWarp][2];
#pragma unroll
  for (int j = 0; j < kPerWarp; ++j) {
    const int64_t r = warp + int64_t(j) * kWarps;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int s = lane + 32 * h;
      v[j][h] = r <= M && s < slices ? p[s * stride + r] : 0.0f;
    }
  }
#pragma unroll
  for (int j = 0; j < kPerWarp; ++j) {
    const int64_t r = warp + int64_t(j) * kWarps;
    if (r < M) {
      const float acc = dev::warp_reduce_sum(v[j][0] + v[j][1]);
      if (lane == 0) mix_s[r] = acc;
    } else if (r == M) {
      const double ss = dev::warp_reduce_sum(double(v[j][0]) + double(v[j][1]));
      if (lane == 0) scale_s = 1.0f / sqrtf(float(ss / double(hd)) + eps);
    }
  }
  __syncthreads();
  for (int64_t r = threadIdx.x; r < M; r += blockDim.x) mix_s[r] *= scale_s;
  __syncthreads();
}

// x_in[d] = Σ pre[i]·X[i][d], streams in order; several loads in flight per thread.
// Threads [first, blockDim.x) share the work (each d's sum is the same whoever adds it).
// Rows of a multiple of 4 floats at 16-byte aligned addresses go 4 values per load.
__device__ __forceinline__ void collapse_block(const float* xt, const float* pre_s, int64_t hc, int64_t dim,
                                               float* out, int first = 0) {
  const int64_t tid = threadIdx.x - first, nthr = blockDim.x - first;
  if (dim % 4 == 0 && ((reinterpret_cast<uintptr_t>(xt) | reinterpret_cast<uintptr_t>(out)) & 15) == 0) {
    const float4* x4 = reinterpret_cast<const float4*>(xt);
    const int64_t d4n = dim / 4;
#pragma unroll 4
    for (int64_t d = tid; d < d4n; d += nthr) {
      const float4 v = x4[d];
      float4 acc = make_float4(pre_s[0] * v.x, pre_s[0] * v.y, pre_s[0] * v.z, pre_s[0] * v.w);
      for (int64_t i = 1; i < hc; ++i) {
        const float4 u = x4[i * d4n + d];
        const float w = pre_s[i];
        acc.x += w * u.x, acc.y += w * u.y, acc.z += w * u.z, acc.w += w * u.w;
      }
      reinterpret_cast<float4*>(out)[d] = acc;
    }
    return;
  }
#pragma unroll 4
  for (int64_t d = tid; d < dim; d += nthr) {
    float acc = pre_s[0] * xt[d];
    for (int64_t i = 1; i < hc; ++i) acc += pre_s[i] * xt[i * dim + d];
    out[d] = acc;
  }
}

// The pre and post gates of one token from its scaled mix values (lanes < hc of the
// calling threads: lane i writes pre_s[i] and post_t[i]).
__device__ __forceinline__ void gates_lane(int lane, const float* mix_s, const float* scale, const float* base,
                                           int64_t hc, float hc_eps, float* pre_s, float* post_t) {
  pre_s[lane] = float(sigmoid(double(mix_s[lane]) * scale[0] + base[lane]) + hc_eps);
  post_t[lane] = float(2.0 * sigmoid(double(mix_s[hc + lane]) * scale[1] + base[hc + lane]));
}

// Sinkhorn of one token on one whole warp: lane i*hc + j holds c[i][j]; every sum gathers
// its hc values by shuffles and adds them in the CPU reference's order, in double.
__device__ void sinkhorn_warp(const float* mix_s, const float* scale, const float* base, int64_t hc, float hc_eps,
                              int64_t iters, float* comb_t) {
  const int lane = threadIdx.x & 31;
  const int i = lane / int(hc), j = lane % int(hc);
  const bool live = lane < hc * hc;
  const int q = 2 * int(hc) + (live ? lane : 0);
  double c = live ? double(mix_s[q]) * scale[2] + base[q] : 0.0;
  auto row_value = [&](double v, int k) { return __shfl_sync(0xffffffffu, v, live ? i * int(hc) + k : 0); };
  auto col_value = [&](double v, int k) { return __shfl_sync(0xffffffffu, v, live ? k * int(hc) + j : 0); };
  // Row softmax + eps.
  double mx = -INFINITY;
  for (int k = 0; k < hc; ++k) mx = fmax(mx, row_value(c, k));
  c = exp(c - mx);
  double sum = 0;
  for (int k = 0; k < hc; ++k) sum += row_value(c, k);
  c = c / sum + hc_eps;
  // Column normalisation, then iters-1 rounds of row + column normalisation.
  for (int64_t it = 0; it < iters; ++it) {
    if (it > 0) {
      sum = 0;
      for (int k = 0; k < hc; ++k) sum += row_value(c, k);
      c /= sum + hc_eps;
    }
    sum = 0;
    for (int k = 0; k < hc; ++k) sum += col_value(c, k);
    c /= sum + hc_eps;
  }
  if (live) comb_t[lane] = float(c);
}

// After mix_partial, one block per token: the gates, then at once Sinkhorn on warp 0 and
// the collapse x_in = Σ pre[i]·X[i] over the other warps.
__global__ void __launch_bounds__(kTailThreads)
    hc_pre_tail(const float* X, const float* partial, int slices, const float* scale, const float* base, int64_t hc,
                int64_t dim, float norm_eps, float hc_eps, int64_t iters, float* x_in, float* post, float* comb) {
  __shared__ float pre_s[kMaxHc];
  __shared__ float mix_s[(2 + kMaxHc) * kMaxHc];
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const int64_t t = blockIdx.x, M = (2 + hc) * hc, hd = hc * dim;
  finish_mix(partial, slices, t, M, hd, norm_eps, mix_s);
  if (threadIdx.x < hc) gates_lane(threadIdx.x, mix_s, scale, base, hc, hc_eps, pre_s, post + t * hc);
  __syncthreads();
  // The collapse needs only the gates: warps 1.. run it while warp 0 runs the Sinkhorn
  // iterations (a serial chain of double-precision shuffles and divisions).
  if (threadIdx.x >= 32) collapse_block(X + t * hd, pre_s, hc, dim, x_in + t * dim, 32);
  else sinkhorn_warp(mix_s, scale, base, hc, hc_eps, iters, comb + t * hc * hc);
}

__global__ void __launch_bounds__(kTailThreads)
    hc_head_tail(const float* X, const float* partial, int slices, const float* scale, const float* base, int64_t hc,
                 int64_t dim, float norm_eps, float hc_eps, float* z) {
  __shared__ float pre_s[kMaxHc];
  __shared__ float mix_s[kMaxHc];
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const int64_t t = blockIdx.x, hd = hc * dim;
  finish_mix(partial, slices, t, hc, hd, norm_eps, mix_s);
  if (threadIdx.x < hc)
    pre_s[threadIdx.x] = float(sigmoid(double(mix_s[threadIdx.x]) * scale[0] + base[threadIdx.x]) + hc_eps);
  __syncthreads();
  collapse_block(X + t * hd, pre_s, hc, dim, z + t * dim);
}

// One block per (token, 1024 dims): Xout[k][d] = post[k]·a[d] + Σ_i comb[i][k]·X[i][d].
__global__ void hc_post_kernel(const float* a, const float* X, const float* post, const float* comb, int64_t hc,
                               int64_t dim, float* Xout) {
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const int64_t t = blockIdx.y;
  const int64_t d = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (d >= dim) return;
  const float* xt = X + t * hc * dim;
  const float* ct = comb + t * hc * hc;
  const float av = a[t * dim + d];
  for (int64_t k = 0; k < hc; ++k) {
    float acc = post[t * hc + k] * av;
    for (int64_t i = 0; i < hc; ++i) acc += ct[i * hc + k] * xt[i * dim + d];
    Xout[(t * hc + k) * dim + d] = acc;
  }
}

void check_shape(const ref::HcShape& s, const char* what) {
  if (s.hc <= 0 || s.hc > kMaxHc) fail(what, ": ", s.hc, " HC streams, expected 1..", kMaxHc);
  if (s.dim <= 0) fail(what, ": dim ", s.dim);
}

void check_fn(const ref::Weight& fn, int64_t rows, const ref::HcShape& s) {
  if (fn.rows != rows || fn.cols != s.hc * s.dim)
    fail(fn.name, ": shape [", fn.cols, ", ", fn.rows, "], expected [", s.hc * s.dim, ", ", rows, "]");
}

bool table_supported(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::Q8_0; }

// Slices of K for the mix: slices of at least 128 values, and n * slices * (M + 1) partials
// fit in the n * (hd + M) floats of scratch the callers provide.
int mix_slices(int64_t hd, int64_t M) {
  return int(std::clamp<int64_t>(std::min((hd + M) / (M + 1), hd / 128), 1, kMaxMixSlices));
}

// The partial mix products of hc_pre and hc_head into scratch (n * slices * (M + 1)
// floats, slices from mix_slices). Returns the slice count.
int mix_partials(const float* X, int64_t n, const ref::Weight& fn, int64_t M, const ref::HcShape& s, float* scratch,
                 const Launch& l) {
  if (!table_supported(fn.type)) fail(fn.name, ": dtype ", dtype_name(fn.type), " has no CUDA HC mix");
  if (n <= 0) fail(fn.name, ": ", n, " tokens");
  const int64_t hd = s.hc * s.dim;
  const int64_t slices = mix_slices(hd, M);
  const dim3 grid(unsigned(slices), unsigned((n + kMixTokens - 1) / kMixTokens));
  auto* kernel = fn.type == DType::F32    ? &mix_partial<DType::F32>
                 : fn.type == DType::F16  ? &mix_partial<DType::F16>
                 : fn.type == DType::BF16 ? &mix_partial<DType::BF16>
                                          : &mix_partial<DType::Q8_0>;
  launch_kernel(kernel, grid, kMixThreads, 0, l, "hc mix", X, n, fn.data, fn.row_bytes(), hd, M, scratch);
  return int(slices);
}

}  // namespace

// ---- launchers ----------------------------------------------------------------------

bool embed_supported(DType t) { return table_supported(t); }

void embed(const ref::Weight& table, const int32_t* tokens, int64_t n, const ref::HcShape& s, float* X, uint32_t* err,
           Launch l) {
  check_shape(s, "cuda embed");
  if (!embed_supported(table.type)) fail(table.name, ": embedding dtype ", dtype_name(table.type), " has no CUDA embed");
  if (table.cols != s.dim) fail(table.name, ": ", table.cols, " columns, expected ", s.dim);
  if (n <= 0) fail("cuda embed: ", n, " tokens");
  launch_kernel(&embed_rows, unsigned(n), 256, 0, l, "embed", table.type, table.data, table.rows, table.row_bytes(),
                tokens, s.hc, s.dim, X, err);
}

void hc_pre(const float* X, int64_t n, const ref::Weight& fn, const float* scale, const float* base,
            const ref::HcShape& s, float* x_in, float* post, float* comb, float* scratch, Launch l) {
  check_shape(s, "cuda hc_pre");
  check_fn(fn, s.mix(), s);
  const int slices = mix_partials(X, n, fn, s.mix(), s, scratch, l);
  launch_kernel(&hc_pre_tail, unsigned(n), kTailThreads, 0, l, "hc_pre", X, scratch, slices, scale, base, s.hc, s.dim,
                s.norm_eps, s.hc_eps, s.sinkhorn_iters, x_in, post, comb);
}

void hc_post(const float* a, const float* X, const float* post, const float* comb, int64_t n, const ref::HcShape& s,
             float* Xout, Launch l) {
  check_shape(s, "cuda hc_post");
  if (n <= 0) fail("cuda hc_post: ", n, " tokens");
  const dim3 grid(unsigned((s.dim + 255) / 256), unsigned(n));
  launch_kernel(&hc_post_kernel, grid, 256, 0, l, "hc_post", a, X, post, comb, s.hc, s.dim, Xout);
}

void hc_head(const float* X, int64_t n, const ref::Weight& fn, const float* scale, const float* base,
             const ref::HcShape& s, float* z, float* scratch, Launch l) {
  check_shape(s, "cuda hc_head");
  check_fn(fn, s.hc, s);
  const int slices = mix_partials(X, n, fn, s.hc, s, scratch, l);
  launch_kernel(&hc_head_tail, unsigned(n), kTailThreads, 0, l, "hc_head", X, scratch, slices, scale, base, s.hc, s.dim,
                s.norm_eps, s.hc_eps, z);
}

}  // namespace fp::cuda
