// CPU dot products and matrix products of weight rows (any dequantisable type) with
// activations: the reference matmuls of the CPU executor.
//
// Float activations: the weight block is dequantised (exactly, GGUF.md §13) into a small
// f32 buffer and dotted in double with the fixed lane order of lanes.h, then rounded once
// to f32. So the result is the correctly-ordered dot of the dequantised row, independent
// of chunking, SIMD, thread count and machine.
//
// Quantised activations: the activations are first quantised to the format ggml pairs
// with the weight type (GGUF.md §14: Q8_0 for Q4_0/Q8_0, Q8_K for K and IQ types), and
// each block is an integer dot scaled by the two block scales, as ggml's CPU backend and
// int8 GPU kernels do. This adds the activation's quantisation error; it is the reference
// for kernels that quantise activations.
#pragma once
#include <cstdint>
#include <optional>

#include "ops/quant/types.h"

namespace fp {

// One weight row of n elements of type t (n a multiple of its block) . x (n floats).
float dot_f32(DType t, const void* w, const float* x, int64_t n);

// The activation format for t's quantised-activation dot: Q8_0 for Q4_0 and Q8_0; Q8_K
// for Q2_K, Q4_K, Q5_K, Q6_K, IQ2_XXS, IQ2_XS, IQ3_XXS; nullopt for other types.
std::optional<DType> q8_activation_type(DType t);

// One weight row . activations already quantised to *q8_activation_type(t).
float dot_q8(DType t, const void* w, const void* xq, int64_t n);

// y[r] = dot_f32(row r of w, x) for r < rows; w is rows x cols, row-major.
void matvec(DType t, const void* w, int64_t rows, int64_t cols, const float* x, float* y);

// y[k*rows + r] = dot_f32(row r of w, x + k*cols) for k < n_tok. Bit-identical to n_tok
// matvec calls. Rows are spread over fp::parallel_for; each output is computed by one
// thread in the fixed order above, so results do not depend on the thread count.
void matmul(DType t, const void* w, int64_t rows, int64_t cols, const float* x, int64_t n_tok,
            float* y);

// As matmul, but each activation row is first quantised to *q8_activation_type(t) and
// the products use dot_q8.
void matmul_q8(DType t, const void* w, int64_t rows, int64_t cols, const float* x, int64_t n_tok,
               float* y);

}  // namespace fp
