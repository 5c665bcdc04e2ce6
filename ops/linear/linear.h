// The matmul op's CPU reference: y = W·x for weight matrices of any dtype flashplan can
// dequantise (F32, F16, BF16, Q8_0, K-quants, IQ2...), and the grouped variant used by
// attn_output_a. "Plain" math: each weight row is dequantised to f32 and dotted with the
// f32 activation in ops/quant's fixed order (double lanes), so y[t][r] depends only on
// row r and token t — never on how many tokens share the call or how rows are split
// over threads. That is what makes chunked prefill, cached decode and MTP
// verification agree bit for bit.
#pragma once
#include <cstdint>
#include <string>

#include "ops/quant/types.h"

namespace fp::ref {

// A row-major weight matrix [rows][cols] (GGUF ne0 = cols, ne1 = rows) in any dtype.
// A 3-D expert tensor is `experts` such matrices back to back.
struct Weight {
  DType type = DType::F32;
  const uint8_t* data = nullptr;
  int64_t rows = 0, cols = 0, experts = 1;
  std::string name;  // for error messages

  bool empty() const { return data == nullptr; }
  int64_t row_bytes() const { return fp::row_bytes(type, cols); }
  const uint8_t* row(int64_t r) const { return data + r * row_bytes(); }
  Weight expert(int64_t e) const;                  // matrix e of a 3-D tensor
  Weight rows_slice(int64_t r0, int64_t n) const;  // rows [r0, r0+n)
};

// Dot product of two f32 vectors with a fixed summation order (16 f32 partial sums,
// then a fixed pairwise reduction): the attention scores' order.
float dot_f32(const float* a, const float* b, int64_t n);

// Row r of w as f32 into dst (cols floats).
void weight_row_f32(const Weight& w, int64_t r, float* dst);

// y[t*ldy + r] = Σ_c W[r][c] · x[t*ldx + c] for t < n, r < rows, through
// fp::matmul (ops/quant/dot.h). Multithreaded over rows; deterministic.
void matmul(const Weight& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy);
inline void matmul(const Weight& w, const float* x, int64_t n, float* y) {
  matmul(w, x, w.cols, n, y, w.rows);
}

// attn_output_a: W holds `groups` blocks of rows_per_group rows; group g reads
// x[t][g*cols .. (g+1)*cols) and writes y[t][g*rows_per_group ..). W.cols = group input.
void grouped_matmul(const Weight& w, int64_t groups, const float* x, int64_t n, float* y);

}  // namespace fp::ref
