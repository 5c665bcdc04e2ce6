// Dequantisation of ggml block formats to f32, exactly as GGUF.md §10-11 say.
//
// Every product in those formulas is exact in f32 and the only rounding is the final
// "- dmin*m" of Q2_K/Q4_K/Q5_K, so these scalar loops give the same bits as gguf-py and
// ggml whatever the compiler does with them (GGUF.md §13). Tests compare with ==.
#pragma once
#include <cstdint>

#include "ops/quant/types.h"

namespace fp {

// F32, F16, BF16, Q4_0, Q8_0, Q2_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ2_XXS, IQ2_XS, IQ3_XXS.
bool can_dequantize(DType t);

// n elements of type t (n a multiple of t's block size) from src into dst.
// Fails with the type's name for a type that cannot be dequantised.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// The per-block kernel behind dequantize_row: nblocks blocks of src -> nblocks * block
// floats. nullptr for a type that cannot be dequantised. For the dot products, which
// dequantise one block at a time without re-dispatching.
using DequantBlocksFn = void (*)(const uint8_t* src, float* dst, int64_t nblocks);
DequantBlocksFn dequant_blocks_fn(DType t);

}  // namespace fp
