// Host entry of the rope family's CUDA kernels (rope.cu): RoPE on the tails of heads at
// the step's positions (forward or inverse: out_inv_rope), and the fused per-head
// unweighted RMSNorm + RoPE of the queries (q_head_norm_rope). CUDA-free header.
//
// Positions come from device memory (pos0: the step's first position), so one captured
// graph serves every decode step.
#pragma once
#include <cstdint>

#include "ops/core/launch.h"

namespace fp::cuda {

// A RoPE table on the device: n_rot/2 doubles (ref::Rope::inv_freq(), YaRN included).
struct RopeTab {
  const double* inv_freq = nullptr;
  int64_t n_rot = 0;
};

enum class RopeOp { rotate, inverse, head_norm_rotate };

// x: [n][heads][head_dim] with token stride `ld` floats (0: heads*head_dim). Token t
// rotates at position *pos0 + t. head_norm_rotate first RMS-normalises each head
// (unweighted, sum of squares in double, eps) as q_head_norm_rope does.
struct RopeArgs {
  float* x = nullptr;
  int64_t n = 0, heads = 0, head_dim = 0, ld = 0;
  RopeTab tab;
  const int64_t* pos0 = nullptr;
  RopeOp op = RopeOp::rotate;
  float eps = 1e-6f;
};
void rope(const RopeArgs& a, Launch l);  // l: stream and PDL (ops/core/launch.h)

}  // namespace fp::cuda
