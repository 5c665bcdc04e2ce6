// RoPE on the tail of each head (MODEL.md §5.6, §11.1-2): the last n_rot values of a
// head rotate in adjacent pairs (2k, 2k+1) by θ_k(p) = p · inv_freq[k]. Sliding-window
// layers and the MTP block use base rope.freq_base without scaling; compressed layers
// (their q, kv, compressed rows, indexer q and keys) use compress_rope_freq_base with
// YaRN frequency interpolation and no magnitude factor. The inverse rotation (−sin)
// undoes the rotation that V = K carried into the attention output.
//
// Angles and sin/cos are computed in double from exact positions, so positions up to
// the 1M context rotate as accurately as position 0.
#pragma once
#include <cstdint>
#include <vector>

namespace fp::ref {

struct RopeParams {
  int64_t n_rot = 0;         // rotated dims per head (even)
  double base = 10000;
  bool yarn = false;         // compressed layers
  double factor = 1;         // YaRN scaling factor
  double orig_ctx = 0;       // YaRN original context
  double beta_fast = 32, beta_slow = 1;
};

class Rope {
 public:
  Rope() = default;
  explicit Rope(const RopeParams& p);

  int64_t n_rot() const { return n_rot_; }
  const std::vector<double>& inv_freq() const { return inv_freq_; }

  // Rotates the last n_rot values of each of n_heads heads of head_dim values at x.
  void apply(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, bool inverse = false) const;

 private:
  int64_t n_rot_ = 0;
  std::vector<double> inv_freq_;  // n_rot / 2 entries
};

}  // namespace fp::ref
