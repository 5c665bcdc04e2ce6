// AVX2 versions of the dequantisers where the scalar loops are slow (the IQ types,
// whose runs of 8 gather grid bytes and apply 8 sign bits). Same arithmetic, same bits
// (GGUF.md §13); dequant.cpp picks them when simd::avx2_active().
#pragma once
#include "ops/quant/dequant.h"

namespace fp::detail {

// The AVX2 kernel for t, or nullptr where there is none (or not on x86-64).
DequantBlocksFn dequant_avx2_fn(DType t);

}  // namespace fp::detail
