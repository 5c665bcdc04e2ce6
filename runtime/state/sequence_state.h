// One sequence's persistent attention state (MODEL.md §8), per layer type:
//   SWA   raw ring of kv rows
//   HCA   raw ring + compressor ring + compressed kv rows
//   CSA   raw ring + attention and indexer compressor rings + compressed kv rows +
//         compressed indexer keys
//   MTP   raw ring (the block is sliding-window only)
// Every ring is indexed by absolute position (slot = pos mod cap) and the number of
// compressed rows is a function of the position, so the whole state is described by
// one number: rolling back to position n (MTP rejection) is setting it, as long as the
// rings keep max_rollback positions more than the math needs. Sized once, at session
// creation, for max_context tokens and steps of at most max_step tokens.
#pragma once
#include <cstdint>
#include <vector>

#include "ops/compressor/compressor.h"
#include "planner/model/config.h"

namespace fp {

struct StateSizing {
  int64_t max_context = 4096;  // positions
  int64_t max_step = 256;      // tokens per forward step (prefill chunk, MTP verify)
  int64_t max_rollback = 0;    // positions a step may be rolled back (MTP draft length)
};

struct CompressorCache {
  ref::CompressorShape shape;
  std::vector<float> kv, score;  // ring [cap][width]
  int64_t cap = 0;
  std::vector<float> rows;       // [max_rows][dim] emitted rows
  int64_t max_rows = 0;

  bool active() const { return shape.ratio > 0; }
  ref::CompressorRing ring() { return {kv.data(), score.data(), cap, shape.width()}; }
  float* row(int64_t w) { return rows.data() + w * shape.dim; }
  const float* row(int64_t w) const { return rows.data() + w * shape.dim; }
};

struct LayerState {
  LayerKind kind = LayerKind::SWA;
  uint32_t ratio = 0;
  int64_t head_dim = 0;
  int64_t raw_cap = 0;
  std::vector<float> raw;  // ring [raw_cap][head_dim]
  CompressorCache attn;    // HCA, CSA
  CompressorCache index;   // CSA

  float* raw_row(int64_t pos) { return raw.data() + (pos % raw_cap) * head_dim; }
  const float* raw_row(int64_t pos) const { return raw.data() + (pos % raw_cap) * head_dim; }
};

struct SequenceState {
  StateSizing sizing;
  std::vector<LayerState> layers;  // trunk
  bool has_mtp = false;
  LayerState mtp;
  uint64_t bytes() const;
};

// Allocates (and zero-fills) the state for config c. `mtp` adds the MTP block's ring.
SequenceState make_sequence_state(const ModelConfig& c, const StateSizing& s, bool mtp);

}  // namespace fp
