// Float-activation dot products and the matvec / matmul row loops (contract in dot.h).
#include "ops/quant/dot.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "ops/core/error.h"
#include "ops/core/parallel.h"
#include "ops/quant/dequant.h"
#include "ops/quant/lanes.h"
#include "ops/quant/quantize.h"

namespace fp {
namespace {

// Elements dequantised at a time by dot_f32: one K-quant block, eight Q8_0 blocks.
constexpr int64_t kChunk = 256;

void check_row(const char* what, DType t, int64_t n) {
  if (!can_dequantize(t)) fail(what, ": weight type ", dtype_name(t), " is not supported");
  const int64_t block = traits(t).block;
  if (n < 0 || n % block != 0)
    fail(what, ": row of ", n, " elements of ", dtype_name(t), ", expected a multiple of ", block);
}

// Weight elements [i, i + len) of a row as f32 (len a multiple of the block size).
void row_to_f32(DType t, const uint8_t* w, int64_t i, int64_t len, float* out) {
  const auto& tr = traits(t);
  const uint8_t* src = w + i / tr.block * tr.bytes;
  if (t == DType::F16)
    f16_row_to_f32(src, out, len);  // F16C where available; same values as deq_f16
  else
    dequant_blocks_fn(t)(src, out, len / tr.block);
}

// Rows per parallel_for chunk: enough elements that a thread's share beats its wake-up.
int64_t row_grain(int64_t cols) { return std::max<int64_t>(1, 65536 / std::max<int64_t>(1, cols)); }

// Scratch row for matmul: one per thread, grown as needed, never shrunk.
float* scratch(int64_t n) {
  thread_local std::vector<float> buf;
  if (int64_t(buf.size()) < n) buf.resize(size_t(n));
  return buf.data();
}

}  // namespace

float dot_f32(DType t, const void* w, const float* x, int64_t n) {
  check_row("dot_f32", t, n);
  const auto* wb = static_cast<const uint8_t*>(w);
  Lanes acc;
  if (t == DType::F32) {
    // The weight row may be unaligned inside a mapped file; unaligned loads handle that,
    // but a float* to misaligned memory is not allowed in C++, so copy in chunks.
    if (reinterpret_cast<uintptr_t>(w) % alignof(float) == 0) {
      lanes_accumulate(acc, static_cast<const float*>(w), x, n);
      return float(lanes_sum(acc));
    }
  }
  float buf[kChunk];
  for (int64_t i = 0; i < n; i += kChunk) {
    const int64_t len = std::min(kChunk, n - i);
    if (t == DType::F32)
      std::memcpy(buf, wb + 4 * i, size_t(len) * 4);
    else
      row_to_f32(t, wb, i, len, buf);
    lanes_accumulate(acc, buf, x + i, len);
  }
  return float(lanes_sum(acc));
}

void matvec(DType t, const void* w, int64_t rows, int64_t cols, const float* x, float* y) {
  matmul(t, w, rows, cols, x, 1, y);
}

void matmul(DType t, const void* w, int64_t rows, int64_t cols, const float* x, int64_t n_tok,
            float* y) {
  check_row("matmul", t, cols);
  if (rows < 0 || n_tok < 0) fail("matmul: negative shape rows ", rows, ", tokens ", n_tok);
  const auto* wb = static_cast<const uint8_t*>(w);
  const int64_t rb = row_bytes(t, cols);
  const bool direct = t == DType::F32 && reinterpret_cast<uintptr_t>(w) % alignof(float) == 0;
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    float* row = direct ? nullptr : scratch(cols);
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* wr = wb + r * rb;
      const float* wf = reinterpret_cast<const float*>(wr);
      if (!direct) {
        if (t == DType::F32)
          std::memcpy(row, wr, size_t(rb));
        else
          row_to_f32(t, wr, 0, cols, row);
        wf = row;
      }
      for (int64_t k = 0; k < n_tok; ++k) {
        Lanes acc;
        lanes_accumulate(acc, wf, x + k * cols, cols);
        y[k * rows + r] = float(lanes_sum(acc));
      }
    }
  });
}

void matmul_q8(DType t, const void* w, int64_t rows, int64_t cols, const float* x, int64_t n_tok,
               float* y) {
  const auto xt = q8_activation_type(t);
  if (!xt) fail("matmul_q8: no quantised-activation dot product for weight type ", dtype_name(t));
  check_row("matmul_q8", t, cols);
  if (rows < 0 || n_tok < 0) fail("matmul_q8: negative shape rows ", rows, ", tokens ", n_tok);
  const int64_t xrb = row_bytes(*xt, cols), rb = row_bytes(t, cols);
  std::vector<uint8_t> xq(size_t(xrb * n_tok));
  for (int64_t k = 0; k < n_tok; ++k) quantize_row(*xt, x + k * cols, xq.data() + k * xrb, cols);
  const auto* wb = static_cast<const uint8_t*>(w);
  parallel_for(rows, row_grain(cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t k = 0; k < n_tok; ++k)
        y[k * rows + r] = dot_q8(t, wb + r * rb, xq.data() + k * xrb, cols);
  });
}

}  // namespace fp
