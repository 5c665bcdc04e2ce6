// Sizing and allocation of a sequence's state (see sequence_state.h).
#include "runtime/state/sequence_state.h"

#include <cmath>

#include "ops/core/error.h"

namespace fp {
namespace {

// Rows a window needs in flight: the compressor reads c·r positions back from the one
// it just wrote; a rollback may leave max_rollback stale positions in front of that.
CompressorCache make_compressor(uint32_t ratio, int64_t dim, const StateSizing& s) {
  CompressorCache c;
  c.shape = {int64_t(ratio), dim};
  const int64_t w = c.shape.width();
  c.cap = (c.shape.overlap() ? 2 : 1) * int64_t(ratio) + s.max_rollback + 1;
  c.kv.assign(size_t(c.cap * w), 0.0f);
  c.score.assign(size_t(c.cap * w), 0.0f);
  c.max_rows = (s.max_context + ratio - 1) / ratio;
  c.rows.assign(size_t(c.max_rows * dim), 0.0f);
  return c;
}

LayerState make_layer(const ModelConfig& c, uint32_t l, const StateSizing& s) {
  LayerState st;
  st.kind = c.layer_kind(l);
  st.ratio = c.compress_ratio(l);
  st.head_dim = c.head_dim;
  // A step writes its max_step rows before attending; its first token still needs the
  // window - 1 rows before it. Rolled-back rows only ever overwrite older ones.
  st.raw_cap = int64_t(c.sliding_window) + s.max_step + s.max_rollback;
  st.raw.assign(size_t(st.raw_cap * st.head_dim), 0.0f);
  if (st.kind != LayerKind::SWA) st.attn = make_compressor(st.ratio, c.head_dim, s);
  if (st.kind == LayerKind::CSA) st.index = make_compressor(st.ratio, c.indexer_head_dim, s);
  return st;
}

uint64_t layer_bytes(const LayerState& l) {
  auto v = [](const std::vector<float>& x) { return uint64_t(x.size()) * sizeof(float); };
  return v(l.raw) + v(l.attn.kv) + v(l.attn.score) + v(l.attn.rows) + v(l.index.kv) + v(l.index.score) +
         v(l.index.rows);
}

}  // namespace

SequenceState make_sequence_state(const ModelConfig& c, const StateSizing& s, bool mtp) {
  if (s.max_context <= 0 || s.max_step <= 0 || s.max_rollback < 0)
    fail("sequence state: max_context ", s.max_context, ", max_step ", s.max_step, ", max_rollback ",
         s.max_rollback, ", expected positive sizes");
  if (uint64_t(s.max_context) > c.context_length && c.context_length > 0)
    fail("sequence state: max_context ", s.max_context, " exceeds the model's context_length ", c.context_length);
  SequenceState st;
  st.sizing = s;
  for (uint32_t l = 0; l < c.n_layer; ++l) st.layers.push_back(make_layer(c, l, s));
  if (mtp) {
    st.has_mtp = true;
    st.mtp = make_layer(c, c.n_layer, s);
  }
  return st;
}

uint64_t SequenceState::bytes() const {
  uint64_t b = 0;
  for (const auto& l : layers) b += layer_bytes(l);
  if (has_mtp) b += layer_bytes(mtp);
  return b;
}

}  // namespace fp
