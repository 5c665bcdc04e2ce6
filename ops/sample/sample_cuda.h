// Host entry of the sampling family's CUDA kernels (sample.cu): greedy argmax per row
// on the device, so a decode step can feed its own next token without the host. Ties go
// to the lower id (as fp::argmax_token does); NaN never wins while a number is left.
// CUDA-free header.
#pragma once
#include <cstdint>

struct CUstream_st;

namespace fp::cuda {

using Stream = CUstream_st*;

// out[t] = argmax of logits[t*n_vocab .. +n_vocab) for t < n.
void argmax_rows(const float* logits, int64_t n, int64_t n_vocab, int32_t* out, Stream s);

}  // namespace fp::cuda
