// The CPU reference executor: runs the op graph of the DS4 forward pass
// (planner/graph/op_graph.h, the node lists a plan records) node by node, each node one
// call to its op kind's CPU reference in ops/<family>/, over named buffers of
// [tokens][dims] for one step of n consecutive positions. The trunk walks the `decode`
// phase's node list (every trunk phase has the same nodes; only their shapes differ),
// the MTP block the `mtp_draft` list.
//
// Every op computes each token's values with a fixed order of arithmetic that does not
// depend on how many tokens share the step or on the thread count. So prefill in any
// chunking, cached decode and MTP verification give bit-identical results.
//
// Nodes are bound once, at construction: weights by tensor name, buffers by name,
// workspace sized for max_step tokens. A step allocates nothing but per-thread scratch.
// Node-by-node parity (the CUDA executor against this one) can read any buffer after
// any node through the node hook.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "ops/hc/hc.h"
#include "ops/numerics/mode.h"
#include "ops/rope/rope.h"
#include "planner/graph/op_graph.h"
#include "runtime/cpu/weights.h"
#include "runtime/state/sequence_state.h"

namespace fp::cpu {

// RoPE of a layer kind (MODEL.md §5.6): sliding-window layers and the MTP block use
// rope.freq_base unscaled; compressed layers, their compressors and the indexer use
// compress_rope_freq_base with YaRN.
ref::RopeParams rope_params(const ModelConfig& c, bool compressed);

// Indexer decisions of the last step, for tests and debugging: per token and CSA
// layer, the selected compressed rows (empty when every visible row was used).
struct IndexerTrace {
  bool enabled = false;
  std::vector<std::vector<std::vector<int32_t>>> picks;  // [layer][token] -> rows
};

// Expert choices of the last step per layer: [layer][token*k + i].
struct RouterTrace {
  bool enabled = false;
  std::vector<std::vector<int32_t>> experts;
};

// Residual streams of the last trunk step, for locating a mismatch layer by layer:
// after_layer[0] = the embedding HC state, after_layer[l+1] = after layer l, each
// [n][hc*n_embd]; final_hidden = the output head's normed input [rows][n_embd].
struct StreamTrace {
  bool enabled = false;
  std::vector<std::vector<float>> after_layer;
  std::vector<float> final_hidden;
};

// A workspace buffer of the graph: rows of `width` floats (or int32s).
struct Buffer {
  std::string name;
  std::vector<float> f;
  std::vector<int32_t> i;
  float* ext = nullptr;  // bound per step (logits: the caller's array)
  int64_t width = 0;
  float* data() { return ext ? ext : f.data(); }
};

class Executor {
 public:
  Executor(const ModelConfig& c, const ModelW& w, const OpGraph& g, Numerics numerics, int64_t max_step);

  const ModelConfig& config() const { return c_; }
  Numerics numerics() const { return numerics_; }
  int64_t max_step() const { return max_step_; }

  // Trunk over tokens[0..n) at positions pos0.. (n <= max_step). Updates st's caches.
  // Writes logits of rows [logit_from, n) to logits ([n - logit_from][n_vocab]) when
  // logits != nullptr (else the head is skipped). Afterwards hidden() holds the final
  // HC state of every row.
  void forward(SequenceState& st, const int32_t* tokens, int64_t n, int64_t pos0, int64_t logit_from,
               float* logits);

  // MTP block over n rows at positions pos0..: row i combines the HC state H[i] with
  // tokens[i] (the token after H's position). Updates st.mtp. Writes logits [n][n_vocab]
  // when logits != nullptr; afterwards hidden() holds the block's output HC states.
  void mtp_forward(SequenceState& st, const int32_t* tokens, const float* H, int64_t n, int64_t pos0,
                   float* logits);

  const float* hidden() const { return hidden_; }  // [n][hc*n_embd] of the last step

  // Called after every node with the node and the executor (read buffers by name).
  std::function<void(const GraphNode&, Executor&)> node_hook;
  Buffer& buffer(const std::string& name);

  IndexerTrace indexer_trace;
  RouterTrace router_trace;
  StreamTrace stream_trace;

 private:
  // A graph node bound to this executor's weights and buffers.
  struct Node {
    const GraphNode* g = nullptr;
    OpKind op = OpKind::matmul;
    int32_t layer = -1;
    const LayerW* L = nullptr;
    std::vector<const ref::Weight*> w;
    std::vector<Buffer*> in, out;
    bool head = false;         // part of the output head (runs on the logit rows)
    bool layer_end = false;    // last node of a layer (stream trace point)
    bool index_keys = false;   // compressor: the indexer's keys
  };
  std::vector<Node> bind(const PhaseGraph& phase);
  void run(const std::vector<Node>& program, SequenceState& st, LayerState* mtp_state);
  void run_node(const Node& n, SequenceState& st, LayerState* mtp_state);
  const ref::Weight& weight(const std::string& name) const;
  LayerState& layer_state(const Node& n, SequenceState& st, LayerState* mtp_state) const;
  const ref::Rope& rope_for(const LayerW& L) const { return L.ratio == 0 ? rope_main_ : rope_comp_; }

  // ---- the op kinds' calls ----------------------------------------------------
  void embed(const ref::Weight& table, const int32_t* tokens, int64_t n, float* hc);
  void q_head_norm_rope(float* q, const ref::Rope& rope, int64_t n, int64_t pos0);
  void kv_rope_store(LayerState& S, float* kv, const ref::Rope& rope, int64_t n, int64_t pos0);
  void compressor(CompressorCache& cc, const float* kv, float* gate, const ref::Weight& ape, const float* norm,
                  const ref::Rope& rope, bool index_keys, int64_t n, int64_t pos0);
  void indexer_topk(const LayerW& L, LayerState& S, float* iq, float* iw, const ref::Rope& rope, int64_t n,
                    int64_t pos0);
  void attention(const LayerW& L, LayerState& S, const float* q, float* o, int64_t n, int64_t pos0);
  void router(const LayerW& L, float* logits, const int32_t* tokens, int64_t n, int32_t* ids, float* w);
  void mtp_embed_proj(const Node& node, const int32_t* tokens, const float* H, int64_t n, float* out);

  const ModelConfig& c_;
  const ModelW& w_;
  Numerics numerics_;
  int64_t max_step_;
  ref::HcShape hcs_;
  ref::Rope rope_main_, rope_comp_;
  int64_t E_, D_, H_, ID_, IH_, K_;

  std::unordered_map<std::string, ref::Weight> weights_;  // every tensor, by GGUF name
  std::unordered_map<std::string, Buffer> bufs_;
  const OpGraph* buffers_of_graph_ = nullptr;
  std::vector<Node> trunk_, mtp_;

  // The current step.
  int64_t n_ = 0, pos0_ = 0, head_from_ = 0;
  const float* mtp_h_ = nullptr;
  const float* hidden_ = nullptr;
  std::vector<float> hc_tmp_, hc_scratch_, mtp_cat_;
  std::vector<std::vector<int32_t>> isel_;  // per token: selected compressed rows
  std::vector<uint8_t> iall_;               // per token: 1 = every visible row
};

}  // namespace fp::cpu
