// Load-time weight layouts other than the file's, and the CPU reference of each repack
// (byte for byte what the device repack kernel writes).
#pragma once
#include <cstdint>

namespace fp {

// How a kernel finds a tensor's bytes. gguf: the file's row layout. iq2xxs_rows: IQ2_XXS
// rows rearranged at load time (below) so that each 32-weight run is 8-byte aligned: the
// decode matvec reads it straight from global memory (ops/quant/NOTES.md). The plan
// records the choice per weight (plan.fbs Repack); the CPU backend reads only gguf.
enum class WeightLayout { gguf, iq2xxs_rows };
const char* weight_layout_name(WeightLayout l);

// IQ2_XXS rows, in place: each row of nb = cols / 256 blocks [f16 d | 8 runs x 8 qs bytes]
// becomes [nb*8 runs x 8 qs bytes][nb f16 d] (same size; cols a multiple of 1024 so that
// every run is 8-byte aligned in a 16-aligned tensor). Fails on another column count.
void repack_iq2xxs_rows(uint8_t* data, int64_t rows, int64_t cols);

}  // namespace fp
