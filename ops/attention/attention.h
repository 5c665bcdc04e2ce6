// Attention with sinks (MODEL.md §5.10, §11.6-7) for one query head over an explicit
// list of key rows. DS4 has one shared K=V head: every key row is also the value row.
//   s_i = q·k_i · scale,  M = max(sink, max s_i),
//   o   = Σ e^(s_i−M) k_i / (e^(sink−M) + Σ e^(s_i−M))
// The sink joins only the denominator and is not scaled. Which rows are visible (raw
// window, compressed rows, indexer selection) is the caller's business; the result
// depends only on the rows and their order. Exponentials and sums run in double.
#pragma once
#include <cstdint>

namespace fp::ref {

// q and out: head_dim floats; keys: n_keys pointers to head_dim floats; scratch: at
// least n_keys floats + 2*head_dim doubles' worth (use attention_scratch_floats).
void attention_head(const float* q, const float* const* keys, int64_t n_keys, int64_t head_dim,
                    float sink, float scale, float* out, float* scratch);

inline int64_t attention_scratch_floats(int64_t n_keys, int64_t head_dim) { return n_keys + 4 * head_dim + 8; }

}  // namespace fp::ref
