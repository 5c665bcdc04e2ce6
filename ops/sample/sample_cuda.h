// Host entry of the sampling family's CUDA kernels (sample.cu), so a decode step can
// pick its own next token without copying logits to the host:
//  - argmax_rows: greedy per row, ties to the lower id, NaN never wins while a number is
//    left (fp::argmax_token's function).
//  - sample_row: fp::sample_token's function (ops/sample/sample.h) on one row, reading
//    the options and the RNG state from device memory and advancing the RNG by exactly
//    one draw (none when temperature <= 0: then the argmax). No host sync and no
//    allocation: capturable in a CUDA graph; the workspace is sized once by
//    sample_workspace_bytes.
// Launch: stream and PDL (ops/core/launch.h); CUB's sort and scan inside sample_row launch
// plain. CUDA-free header.
#pragma once
#include <cstddef>
#include <cstdint>

#include "ops/core/launch.h"
#include "ops/sample/sample.h"

namespace fp::cuda {

// out[t] = argmax of logits[t*n_vocab .. +n_vocab) for t < n.
void argmax_rows(const float* logits, int64_t n, int64_t n_vocab, int32_t* out, Launch l);

// Bytes of device workspace sample_row needs for rows of n_vocab logits.
size_t sample_workspace_bytes(int64_t n_vocab);

// *out = one token from logits[0 .. n_vocab) under state->params, drawing from
// state->rng (device memory, advanced in place). `workspace`: sample_workspace_bytes.
void sample_row(const float* logits, int64_t n_vocab, SampleDeviceState* state, void* workspace,
                size_t workspace_bytes, int32_t* out, Launch l);

}  // namespace fp::cuda
