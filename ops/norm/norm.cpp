// RMSNorm CPU reference (see norm.h).
#include "ops/norm/norm.h"

#include <algorithm>
#include <cmath>

#include "ops/core/parallel.h"

namespace fp::ref {

void rms_norm_row(const float* x, const float* w, float* y, int64_t dim, float eps) {
  double ss = 0.0;
  for (int64_t i = 0; i < dim; ++i) ss += double(x[i]) * double(x[i]);
  const float scale = 1.0f / std::sqrt(float(ss / double(dim)) + eps);
  if (w) {
    for (int64_t i = 0; i < dim; ++i) y[i] = x[i] * scale * w[i];
  } else {
    for (int64_t i = 0; i < dim; ++i) y[i] = x[i] * scale;
  }
}

void rms_norm(const float* x, const float* w, float* y, int64_t n, int64_t dim, float eps) {
  parallel_for(n, std::max<int64_t>(1, 16384 / std::max<int64_t>(dim, 1)), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) rms_norm_row(x + t * dim, w, y + t * dim, dim, eps);
  });
}

}  // namespace fp::ref
