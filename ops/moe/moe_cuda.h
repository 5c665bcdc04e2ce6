// Host entry of the MoE family's CUDA kernels (moe.cu), the ops of moe.h on the device:
//   router   in place: logits -> sqrt(softplus) scores; experts from tid2eid[token]
//            (hash layers) or the top-k of scores + bias in descending order, ties to
//            the lower id, NaN below every number (so k distinct in-range ids whatever
//            the scores); weights from the unbiased scores, normalised and scaled.
//            Token ids outside the vocabulary read row 0 and set kErrTokenRange in *err;
//            tid2eid entries are clamped into [0, n_expert).
//   swiglu   silu(min(g, L))·clamp(u, −L, L), NaN kept as the CPU keeps it.
//   moe      per (token, slot): gate/up/down through the linear family's expert-indexed
//            products (every slot of every token in one launch each), swiglu, then the
//            weighted sum in slot order.
// CUDA-free header.
#pragma once
#include <cstdint>

#include "ops/linear/linear_cuda.h"
#include "ops/moe/moe.h"

namespace fp::cuda {

struct RouterArgs {
  float* logits = nullptr;          // [n][n_expert], scores on return
  int64_t n = 0, n_expert = 0, k = 0;
  const float* bias = nullptr;      // top-k layers (nullable)
  const int32_t* tid2eid = nullptr; // hash layers: [n_vocab][k]
  int64_t n_vocab = 0;
  const int32_t* tokens = nullptr;  // [n] (hash layers)
  bool normalise = true;
  float scale = 1.0f;
  int32_t* ids = nullptr;           // [n][k]
  float* weights = nullptr;         // [n][k]
  uint32_t* err = nullptr;
};
void router(const RouterArgs& a, Stream s);

void swiglu(const float* gate, const float* up, int64_t n, float limit, float* out, Stream s);

struct MoeArgs {
  const float* u = nullptr;        // [n][dim]
  int64_t n = 0, k = 0;
  const int32_t* ids = nullptr;    // [n][k]
  const float* weights = nullptr;  // [n][k]
  ref::Weight gate, up, down;      // device: [experts][ff][dim], [experts][dim][ff]
  float limit = 0;
  float* out = nullptr;            // [n][dim]
  float* work = nullptr;           // moe_work_floats(n, k, dim, ff)
};
int64_t moe_work_floats(int64_t n, int64_t k, int64_t dim, int64_t ff);
void moe(const MoeArgs& a, const LinearWorkspace& ws, Stream s);

}  // namespace fp::cuda
