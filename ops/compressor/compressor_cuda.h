// Host entry of the compressor family's CUDA kernels (compressor.cu): the state update
// and row emission of compressor.h for a step of n tokens over device buffers.
//   1. store: every token's kv row and gate row (+ ape[pos mod r]) go to the ring slot
//      pos mod cap;
//   2. emit: each token that completes a window (pos+1 a multiple of r) pools the
//      window per channel (softmax over the gates, in double), RMS-normalises with the
//      compressor norm, rotates at the window's first position and, in official
//      numerics, applies the round trip of its kind (attention rows: FP8 + F16; indexer
//      keys: Hadamard + FP4). One block per token; tokens without a window exit.
// Storing every token before emitting needs a ring of at least c·r + n slots (the CPU
// interleaves per token and gets by with c·r + 1). A window beyond max_rows sets
// kErrContextFull in *err and writes nothing. CUDA-free header.
#pragma once
#include <cstdint>

#include "ops/compressor/compressor.h"
#include "ops/rope/rope_cuda.h"

namespace fp::cuda {

inline constexpr uint32_t kErrContextFull = 2;

struct CompressorArgs {
  const float* kv = nullptr;    // [n][width] this step's kv projections
  const float* gate = nullptr;  // [n][width] gate projections (ape not yet added)
  const float* ape = nullptr;   // [ratio][width] f32
  float* ring_kv = nullptr;     // [cap][width]
  float* ring_score = nullptr;  // [cap][width]
  int64_t cap = 0;
  float* rows = nullptr;        // [max_rows][dim] emitted rows
  uint16_t* rows16 = nullptr;   // or as F16 bits: attention rows in official numerics only
                                // (already F16-rounded there, so the same values)
  int64_t max_rows = 0;
  ref::CompressorShape shape;
  int64_t n = 0;
  const float* norm = nullptr;  // [dim]
  float eps = 1e-6f;
  RopeTab tab;
  const int64_t* pos0 = nullptr;
  bool official = false;
  bool index_keys = false;      // indexer compressor: QAT round trip instead of FP8
  uint32_t* err = nullptr;
};
// Smallest ring a step of n tokens needs.
int64_t compressor_ring_min(const ref::CompressorShape& s, int64_t n);
void compressor(const CompressorArgs& a, Launch l);  // l: stream and PDL (ops/core/launch.h)

}  // namespace fp::cuda
