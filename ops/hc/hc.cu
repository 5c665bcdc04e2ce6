// CUDA kernels of the hyper-connection family (see hc_cuda.h). The gates and Sinkhorn
// work on hc² values per token: one thread computes them in double exactly as the CPU
// reference orders them; the collapse and post spread over the block.
#include <algorithm>

#include "ops/hc/hc_cuda.h"
#include "ops/linear/linear_cuda.h"
#include "ops/norm/norm_cuda.h"
#include "ops/quant/cuda_common.cuh"

namespace fp::cuda {
namespace {

constexpr int kMaxHc = 8;  // streams a kernel supports (DS4: 4)

// ---- kernels ------------------------------------------------------------------------

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

__global__ void embed_rows(DType type, const uint8_t* table, int64_t rows, int64_t row_bytes, const int32_t* tokens,
                           int64_t hc, int64_t dim, float* X, uint32_t* err) {
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

// Gates and Sinkhorn of one token (thread 0), then the collapse x_in = Σ pre[i]·X[i].
__global__ void hc_pre_tail(const float* X, const float* mix, const float* scale, const float* base, int64_t hc,
                            int64_t dim, float hc_eps, int64_t iters, float* x_in, float* post, float* comb) {
  __shared__ float pre_s[kMaxHc];
  const int64_t t = blockIdx.x, M = (2 + hc) * hc;
  if (threadIdx.x == 0) {
    const float* mt = mix + t * M;
    double c[kMaxHc * kMaxHc];
    for (int64_t i = 0; i < hc; ++i) {
      pre_s[i] = float(sigmoid(double(mt[i]) * scale[0] + base[i]) + hc_eps);
      post[t * hc + i] = float(2.0 * sigmoid(double(mt[hc + i]) * scale[1] + base[hc + i]));
    }
    for (int64_t i = 0; i < hc; ++i) {
      double mx = -INFINITY;
      for (int64_t j = 0; j < hc; ++j) {
        const int64_t q = 2 * hc + i * hc + j;
        c[i * hc + j] = double(mt[q]) * scale[2] + base[q];
        mx = fmax(mx, c[i * hc + j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < hc; ++j) sum += (c[i * hc + j] = exp(c[i * hc + j] - mx));
      for (int64_t j = 0; j < hc; ++j) c[i * hc + j] = c[i * hc + j] / sum + hc_eps;
    }
    for (int64_t it = 0; it < iters; ++it) {
      if (it > 0) {  // row normalisation (rounds after the first)
        for (int64_t i = 0; i < hc; ++i) {
          double sum = 0;
          for (int64_t j = 0; j < hc; ++j) sum += c[i * hc + j];
          for (int64_t j = 0; j < hc; ++j) c[i * hc + j] /= sum + hc_eps;
        }
      }
      for (int64_t j = 0; j < hc; ++j) {
        double sum = 0;
        for (int64_t i = 0; i < hc; ++i) sum += c[i * hc + j];
        for (int64_t i = 0; i < hc; ++i) c[i * hc + j] /= sum + hc_eps;
      }
    }
    for (int64_t q = 0; q < hc * hc; ++q) comb[t * hc * hc + q] = float(c[q]);
  }
  __syncthreads();
  const float* xt = X + t * hc * dim;
  for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
    float acc = pre_s[0] * xt[d];
    for (int64_t i = 1; i < hc; ++i) acc += pre_s[i] * xt[i * dim + d];
    x_in[t * dim + d] = acc;
  }
}

__global__ void hc_head_tail(const float* X, const float* mix, const float* scale, const float* base, int64_t hc,
                             int64_t dim, float hc_eps, float* z) {
  __shared__ float pre_s[kMaxHc];
  const int64_t t = blockIdx.x;
  if (threadIdx.x < hc)
    pre_s[threadIdx.x] = float(sigmoid(double(mix[t * hc + threadIdx.x]) * scale[0] + base[threadIdx.x]) + hc_eps);
  __syncthreads();
  const float* xt = X + t * hc * dim;
  for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
    float acc = pre_s[0] * xt[d];
    for (int64_t i = 1; i < hc; ++i) acc += pre_s[i] * xt[i * dim + d];
    z[t * dim + d] = acc;
  }
}

// One block per (token, 1024 dims): Xout[k][d] = post[k]·a[d] + Σ_i comb[i][k]·X[i][d].
__global__ void hc_post_kernel(const float* a, const float* X, const float* post, const float* comb, int64_t hc,
                               int64_t dim, float* Xout) {
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

// The flat norm and the mix matvec shared by hc_pre and hc_head: scratch = [flat | mix].
void flat_mix(const float* X, int64_t n, const ref::Weight& fn, const ref::HcShape& s, float* scratch, Stream st) {
  const int64_t hd = s.hc * s.dim;
  float* flat = scratch;
  float* mix = scratch + n * hd;
  rms_norm(X, nullptr, flat, n, hd, s.norm_eps, st);
  LinearWorkspace ws;
  ws.exact = true;  // f32 activations: the mix is tiny and feeds sigmoid gates
  linear(fn, flat, n, mix, ws, st);
}

}  // namespace

// ---- launchers ----------------------------------------------------------------------

bool embed_supported(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::Q8_0; }

void embed(const ref::Weight& table, const int32_t* tokens, int64_t n, const ref::HcShape& s, float* X, uint32_t* err,
           Stream st) {
  check_shape(s, "cuda embed");
  if (!embed_supported(table.type)) fail(table.name, ": embedding dtype ", dtype_name(table.type), " has no CUDA embed");
  if (table.cols != s.dim) fail(table.name, ": ", table.cols, " columns, expected ", s.dim);
  if (n <= 0) fail("cuda embed: ", n, " tokens");
  embed_rows<<<unsigned(n), 256, 0, st>>>(table.type, table.data, table.rows, table.row_bytes(), tokens, s.hc, s.dim,
                                          X, err);
  check_launch("embed");
}

void hc_pre(const float* X, int64_t n, const ref::Weight& fn, const float* scale, const float* base,
            const ref::HcShape& s, float* x_in, float* post, float* comb, float* scratch, Stream st) {
  check_shape(s, "cuda hc_pre");
  check_fn(fn, s.mix(), s);
  flat_mix(X, n, fn, s, scratch, st);
  hc_pre_tail<<<unsigned(n), 256, 0, st>>>(X, scratch + n * s.hc * s.dim, scale, base, s.hc, s.dim, s.hc_eps,
                                           s.sinkhorn_iters, x_in, post, comb);
  check_launch("hc_pre");
}

void hc_post(const float* a, const float* X, const float* post, const float* comb, int64_t n, const ref::HcShape& s,
             float* Xout, Stream st) {
  check_shape(s, "cuda hc_post");
  if (n <= 0) fail("cuda hc_post: ", n, " tokens");
  const dim3 grid(unsigned((s.dim + 255) / 256), unsigned(n));
  hc_post_kernel<<<grid, 256, 0, st>>>(a, X, post, comb, s.hc, s.dim, Xout);
  check_launch("hc_post");
}

void hc_head(const float* X, int64_t n, const ref::Weight& fn, const float* scale, const float* base,
             const ref::HcShape& s, float* z, float* scratch, Stream st) {
  check_shape(s, "cuda hc_head");
  check_fn(fn, s.hc, s);
  flat_mix(X, n, fn, s, scratch, st);
  hc_head_tail<<<unsigned(n), 256, 0, st>>>(X, scratch + n * s.hc * s.dim, scale, base, s.hc, s.dim, s.hc_eps, z);
  check_launch("hc_head");
}

}  // namespace fp::cuda
