// The KV compressors (MODEL.md §5.8, §11.10; HF_MAPPING §4.4). Every token of a
// compressed layer contributes a kv row and a gate row (width c·d, c = 2 for the
// overlapping ratio-4 compressor, 1 otherwise; the gate already has ape[pos mod r]
// added). When a window of r tokens completes, one row is emitted: per channel, a
// softmax over the window's gates weights its kv values (ratio 4: the previous
// window's first halves and the current window's second halves, 2r slots), then
// RMSNorm with the compressor norm and RoPE at the window's first position.
//
// State is a ring of per-position rows indexed by absolute position (slot = pos mod
// cap). Nothing is shifted or cleared, so a chunk boundary never changes a result, and
// rolling a sequence back (MTP rejection) is just moving its position back, as long as
// cap >= c·r + the rollback depth (runtime/state sizes it).
#pragma once
#include <cstdint>

#include "ops/rope/rope.h"

namespace fp::ref {

struct CompressorRing {
  float* kv = nullptr;     // [cap][width]
  float* score = nullptr;  // [cap][width]
  int64_t cap = 0;
  int64_t width = 0;       // c·d
  float* kv_row(int64_t pos) const { return kv + (pos % cap) * width; }
  float* score_row(int64_t pos) const { return score + (pos % cap) * width; }
};

struct CompressorShape {
  int64_t ratio = 0;       // r
  int64_t dim = 0;         // d (head_dim for attention rows, indexer head dim for keys)
  bool overlap() const { return ratio == 4; }
  int64_t width() const { return overlap() ? 2 * dim : dim; }
};

// The softmax pooling of window w into out[dim] (no norm, no rope).
void compressor_pool(const CompressorRing& ring, const CompressorShape& s, int64_t w, float* out);

// Pool, RMSNorm (norm_w, eps), RoPE at position w·r: the compressed row of window w.
void compressor_emit(const CompressorRing& ring, const CompressorShape& s, int64_t w,
                     const float* norm_w, float eps, const Rope& rope, float* out);

}  // namespace fp::ref
