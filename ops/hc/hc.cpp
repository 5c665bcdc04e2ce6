// Hyper-connection CPU references (see hc.h).
#include "ops/hc/hc.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops/core/error.h"
#include "ops/core/parallel.h"
#include "ops/norm/norm.h"

namespace fp::ref {
namespace {

double sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

// Collapse: out = Σ_i w[i] · X[i], streams in order.
void collapse(const float* X, const float* w, int64_t hc, int64_t dim, float* out) {
  for (int64_t d = 0; d < dim; ++d) out[d] = w[0] * X[d];
  for (int64_t i = 1; i < hc; ++i) {
    const float* xi = X + i * dim;
    for (int64_t d = 0; d < dim; ++d) out[d] += w[i] * xi[d];
  }
}

void check_fn(const Weight& fn, int64_t rows, const HcShape& s) {
  if (fn.rows != rows || fn.cols != s.hc * s.dim)
    fail(fn.name, ": shape [", fn.cols, ", ", fn.rows, "], expected [", s.hc * s.dim, ", ", rows, "]");
}

}  // namespace

void hc_embed(const float* e, int64_t n, const HcShape& s, float* X) {
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < s.hc; ++i)
      std::memcpy(X + (t * s.hc + i) * s.dim, e + t * s.dim, size_t(s.dim) * sizeof(float));
}

void hc_pre(const float* X, int64_t n, const Weight& fn, const float* scale, const float* base,
            const HcShape& s, float* x_in, float* post, float* comb, float* scratch) {
  const int64_t hd = s.hc * s.dim, mix = s.mix(), hc = s.hc;
  check_fn(fn, mix, s);
  float* flat = scratch;
  float* m = scratch + n * hd;
  rms_norm(X, nullptr, flat, n, hd, s.norm_eps);
  matmul(fn, flat, n, m);
  parallel_for(n, 4, [&](int64_t b, int64_t e) {
    std::vector<double> c(static_cast<size_t>(hc * hc));
    std::vector<float> pre(static_cast<size_t>(hc));
    for (int64_t t = b; t < e; ++t) {
      const float* mt = m + t * mix;
      for (int64_t i = 0; i < hc; ++i) {
        pre[i] = float(sigmoid(double(mt[i]) * scale[0] + base[i]) + s.hc_eps);
        post[t * hc + i] = float(2.0 * sigmoid(double(mt[hc + i]) * scale[1] + base[hc + i]));
      }
      // Sinkhorn: row softmax + eps, column normalisation, then iters-1 row/column rounds.
      for (int64_t i = 0; i < hc; ++i) {
        double mx = -INFINITY;
        for (int64_t j = 0; j < hc; ++j) {
          const int64_t q = 2 * hc + i * hc + j;
          c[i * hc + j] = double(mt[q]) * scale[2] + base[q];
          mx = std::max(mx, c[i * hc + j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < hc; ++j) sum += (c[i * hc + j] = std::exp(c[i * hc + j] - mx));
        for (int64_t j = 0; j < hc; ++j) c[i * hc + j] = c[i * hc + j] / sum + s.hc_eps;
      }
      auto col_norm = [&] {
        for (int64_t j = 0; j < hc; ++j) {
          double sum = 0;
          for (int64_t i = 0; i < hc; ++i) sum += c[i * hc + j];
          for (int64_t i = 0; i < hc; ++i) c[i * hc + j] /= sum + s.hc_eps;
        }
      };
      auto row_norm = [&] {
        for (int64_t i = 0; i < hc; ++i) {
          double sum = 0;
          for (int64_t j = 0; j < hc; ++j) sum += c[i * hc + j];
          for (int64_t j = 0; j < hc; ++j) c[i * hc + j] /= sum + s.hc_eps;
        }
      };
      col_norm();
      for (int64_t it = 1; it < s.sinkhorn_iters; ++it) {
        row_norm();
        col_norm();
      }
      for (int64_t q = 0; q < hc * hc; ++q) comb[t * hc * hc + q] = float(c[q]);
      collapse(X + t * hd, pre.data(), hc, s.dim, x_in + t * s.dim);
    }
  });
}

void hc_post(const float* a, const float* X, const float* post, const float* comb, int64_t n,
             const HcShape& s, float* Xout) {
  const int64_t hc = s.hc, dim = s.dim, hd = hc * dim;
  parallel_for(n, 4, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const float* xt = X + t * hd;
      const float* ct = comb + t * hc * hc;
      for (int64_t k = 0; k < hc; ++k) {
        float* out = Xout + t * hd + k * dim;
        const float pk = post[t * hc + k];
        for (int64_t d = 0; d < dim; ++d) out[d] = pk * a[t * dim + d];
        for (int64_t i = 0; i < hc; ++i) {
          const float w = ct[i * hc + k];
          const float* xi = xt + i * dim;
          for (int64_t d = 0; d < dim; ++d) out[d] += w * xi[d];
        }
      }
    }
  });
}

void hc_head(const float* X, int64_t n, const Weight& fn, const float* scale, const float* base,
             const HcShape& s, float* z, float* scratch) {
  const int64_t hd = s.hc * s.dim, hc = s.hc;
  check_fn(fn, hc, s);
  float* flat = scratch;
  float* m = scratch + n * hd;
  rms_norm(X, nullptr, flat, n, hd, s.norm_eps);
  matmul(fn, flat, n, m);
  for (int64_t t = 0; t < n; ++t) {
    float pre[64];
    if (hc > 64) fail("hc_head: ", hc, " streams, at most 64 supported");
    for (int64_t i = 0; i < hc; ++i)
      pre[i] = float(sigmoid(double(m[t * hc + i]) * scale[0] + base[i]) + s.hc_eps);
    collapse(X + t * hd, pre, hc, s.dim, z + t * s.dim);
  }
}

}  // namespace fp::ref
