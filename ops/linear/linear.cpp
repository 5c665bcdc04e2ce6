// matmul / grouped_matmul CPU references (see linear.h). Rows are processed in small
// blocks: a block is dequantised once into a per-thread buffer, then dotted with every
// token, so prefill reuses each dequantised row across the chunk.
#include "ops/linear/linear.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/core/error.h"
#include "ops/core/parallel.h"
#include "ops/quant/dequant.h"

namespace fp::ref {
namespace {

constexpr int64_t kRowBlock = 8;
constexpr int64_t kMinWorkPerThread = 1 << 15;  // multiply-adds worth a thread

}  // namespace

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
  const int64_t blocks = (w.rows + kRowBlock - 1) / kRowBlock;
  const int64_t work_per_block = kRowBlock * w.cols * std::max<int64_t>(n, 1);
  const int64_t grain = std::max<int64_t>(1, kMinWorkPerThread / std::max<int64_t>(work_per_block, 1));
  parallel_for(blocks, grain, [&](int64_t b0, int64_t b1) {
    thread_local std::vector<float> buf;
    const bool direct = w.type == DType::F32;
    if (!direct) buf.resize(size_t(kRowBlock * w.cols));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t r0 = b * kRowBlock, r1 = std::min(w.rows, r0 + kRowBlock);
      const float* rows[kRowBlock];
      for (int64_t r = r0; r < r1; ++r) {
        if (direct) {
          rows[r - r0] = reinterpret_cast<const float*>(w.row(r));
        } else {
          float* dst = buf.data() + (r - r0) * w.cols;
          dequantize_row(w.type, w.row(r), dst, w.cols);
          rows[r - r0] = dst;
        }
      }
      for (int64_t t = 0; t < n; ++t) {
        const float* xt = x + t * ldx;
        float* yt = y + t * ldy;
        for (int64_t r = r0; r < r1; ++r) yt[r] = dot_f32(rows[r - r0], xt, w.cols);
      }
    }
  });
}

void grouped_matmul(const Weight& w, int64_t groups, const float* x, int64_t n, float* y) {
  if (groups <= 0 || w.rows % groups != 0) fail(w.name, ": ", w.rows, " rows do not split into ", groups, " groups");
  const int64_t rg = w.rows / groups;
  for (int64_t g = 0; g < groups; ++g)
    matmul(w.rows_slice(g * rg, rg), x + g * w.cols, groups * w.cols, n, y + g * rg, groups * rg);
}

}  // namespace fp::ref
