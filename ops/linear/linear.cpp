// matmul / grouped_matmul CPU references (see linear.h) over ops/quant's matmul, whose
// dot products use the one fixed summation order of ops/quant/lanes.h (double lanes,
// the same bits with or without AVX2, on any machine, for any thread count).
#include "ops/linear/linear.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/core/error.h"
#include "ops/core/parallel.h"
#include "ops/quant/dequant.h"
#include "ops/quant/dot.h"

namespace fp::ref {
Weight Weight::expert(int64_t e) const {
  if (e < 0 || e >= experts) fail(name, ": expert ", e, " out of range, expected < ", experts);
  Weight w = *this;
  w.data = data + e * rows * row_bytes();
  w.experts = 1;
  return w;
}

Weight Weight::rows_slice(int64_t r0, int64_t n) const {
  if (r0 < 0 || n < 0 || r0 + n > rows) fail(name, ": rows [", r0, ", ", r0 + n, ") out of [0, ", rows, ")");
  Weight w = *this;
  w.data = row(r0);
  w.rows = n;
  w.experts = 1;
  return w;
}

float dot_f32(const float* a, const float* b, int64_t n) {
  float acc[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  for (int j = 0; i < n; ++i, ++j) acc[j] += a[i] * b[i];
  for (int w = 8; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
  return acc[0];
}

void weight_row_f32(const Weight& w, int64_t r, float* dst) {
  if (w.type == DType::F32) {
    std::memcpy(dst, w.row(r), size_t(w.cols) * sizeof(float));
    return;
  }
  dequantize_row(w.type, w.row(r), dst, w.cols);
}

void matmul(const Weight& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy) {
  if (w.empty()) fail("matmul: weight ", w.name, " is not bound");
  if (w.type != DType::F32 && !can_dequantize(w.type))
    fail(w.name, ": dtype ", dtype_name(w.type), " cannot be dequantised");
  if (ldx == w.cols && ldy == w.rows) {
    fp::matmul(w.type, w.data, w.rows, w.cols, x, n, y);
    return;
  }
  // Strided operands (a group's slice of a wider row): gather, multiply, scatter.
  thread_local std::vector<float> xs, ys;
  xs.resize(size_t(n * w.cols));
  ys.resize(size_t(n * w.rows));
  for (int64_t t = 0; t < n; ++t) std::memcpy(xs.data() + t * w.cols, x + t * ldx, size_t(w.cols) * sizeof(float));
  fp::matmul(w.type, w.data, w.rows, w.cols, xs.data(), n, ys.data());
  for (int64_t t = 0; t < n; ++t) std::memcpy(y + t * ldy, ys.data() + t * w.rows, size_t(w.rows) * sizeof(float));
}

void grouped_matmul(const Weight& w, int64_t groups, const float* x, int64_t n, float* y) {
  if (groups <= 0 || w.rows % groups != 0) fail(w.name, ": ", w.rows, " rows do not split into ", groups, " groups");
  const int64_t rg = w.rows / groups;
  for (int64_t g = 0; g < groups; ++g)
    matmul(w.rows_slice(g * rg, rg), x + g * w.cols, groups * w.cols, n, y + g * rg, groups * rg);
}

}  // namespace fp::ref
