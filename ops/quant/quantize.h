// Quantisation of f32 rows into the block formats that activations (and test data) use:
// Q8_0 and Q4_0 exactly as ggml's quantize_row_*_ref (GGUF.md §14), Q8_K as
// quantize_row_q8_K_ref (GGUF.md §11), and F16 / BF16 / F32 by round to nearest even.
// No K-quant or IQ weight quantisers: flashplan reads those, it never makes them.
#pragma once
#include <cstdint>

#include "ops/quant/types.h"

namespace fp {

// F32, F16, BF16, Q4_0, Q8_0, Q8_K.
bool can_quantize(DType t);

// n floats (n a multiple of t's block size) from src into row_bytes(t, n) bytes at dst.
// Fails with the type's name for a type that cannot be quantised.
void quantize_row(DType t, const float* src, void* dst, int64_t n);

}  // namespace fp
