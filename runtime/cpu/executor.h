// The CPU reference executor: the DS4 forward pass as a sequence of op calls (one
// method per op kind of planner/graph/op_kind.h) over explicit buffers of
// [tokens][dims], for one step of n consecutive positions. A plan's node list maps
// onto the same calls; layer() is the per-layer node order of HELPERS.md.
//
// Every op computes each token's values with a fixed order of arithmetic that does
// not depend on how many tokens share the step or on the thread count. So prefill in
// any chunking, cached decode and MTP verification give bit-identical results.
//
// All buffers are sized at construction for max_step tokens; a step never allocates
// beyond per-thread scratch.
#pragma once
#include <cstdint>
#include <vector>

#include "ops/numerics/mode.h"
#include "ops/hc/hc.h"
#include "ops/rope/rope.h"
#include "runtime/cpu/weights.h"
#include "runtime/state/sequence_state.h"

namespace fp::cpu {

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

class Executor {
 public:
  Executor(const ModelConfig& c, const ModelW& w, Numerics numerics, int64_t max_step);

  const ModelConfig& config() const { return c_; }
  Numerics numerics() const { return numerics_; }
  int64_t max_step() const { return max_step_; }

  // Trunk over tokens[0..n) at positions pos0.. (n <= max_step). Updates st's caches.
  // Writes logits of rows [logit_from, n) to logits ([n - logit_from][n_vocab]) when
  // logits != nullptr. Afterwards hidden() holds the final HC state of every row.
  void forward(SequenceState& st, const int32_t* tokens, int64_t n, int64_t pos0, int64_t logit_from,
               float* logits);
  const float* hidden() const { return X_.data(); }  // [n][hc*n_embd] of the last step

  // MTP block over n rows at positions pos0..: row i combines the HC state H[i] with
  // tokens[i] (the token after H's position). Updates st.mtp. Writes logits [n][n_vocab];
  // afterwards hidden() holds the block's output HC states (the next draft's input).
  void mtp_forward(SequenceState& st, const int32_t* tokens, const float* H, int64_t n, int64_t pos0,
                   float* logits);

  IndexerTrace indexer_trace;
  RouterTrace router_trace;
  StreamTrace stream_trace;

 private:
  // ---- one method per op kind ------------------------------------------------
  void embed(const ref::Weight& table, const int32_t* tokens, int64_t n);
  void hc_pre(const ref::Weight& fn, const float* scale, const float* base, int64_t n);
  void rms_norm(const float* x, const float* w, float* y, int64_t n, int64_t dim);
  void matmul(const ref::Weight& w, const float* x, int64_t n, float* y);
  void q_head_norm_rope(const ref::Rope& rope, int64_t n, int64_t pos0);
  void kv_rope_store(LayerState& S, const ref::Rope& rope, int64_t n, int64_t pos0);
  void compressor(CompressorCache& cc, const ref::Weight& kv_w, const ref::Weight& gate_w,
                  const ref::Weight& ape, const float* norm, const ref::Rope& rope, bool index_keys, int64_t n,
                  int64_t pos0);
  void indexer_topk(const LayerW& L, LayerState& S, const ref::Rope& rope, int64_t n, int64_t pos0);
  void attention(const LayerW& L, LayerState& S, int64_t n, int64_t pos0);
  void out_inv_rope(const ref::Rope& rope, int64_t n, int64_t pos0);
  void grouped_matmul(const ref::Weight& w, int64_t n);
  void hc_post(const float* a, int64_t n);
  void router(const LayerW& L, const int32_t* tokens, int64_t n);
  void moe(const LayerW& L, int64_t n);
  void swiglu(float limit, int64_t n);
  void add(int64_t n);
  void output_hc_head(const ref::Weight& fn, const float* scale, const float* base, int64_t row0, int64_t n);
  void mtp_embed_proj(const MtpW& m, const int32_t* tokens, const float* H, int64_t n);

  // ---- the per-layer node order ----------------------------------------------
  void layer(const LayerW& L, LayerState& S, const int32_t* tokens, int64_t n, int64_t pos0);
  void head(const ref::Weight& fn, const float* scale, const float* base, const float* norm,
            const ref::Weight& out, int64_t row0, int64_t n, float* logits);
  const ref::Rope& rope_for(const LayerW& L) const { return L.ratio == 0 ? rope_main_ : rope_comp_; }

  const ModelConfig& c_;
  const ModelW& w_;
  Numerics numerics_;
  int64_t max_step_;
  ref::HcShape hcs_;
  ref::Rope rope_main_, rope_comp_;
  int64_t E_, D_, H_, QL_, ID_, IH_, K_;

  // Activations, [max_step][...] each.
  std::vector<float> X_, X2_, x_in_, post_, comb_, hc_scratch_;
  std::vector<float> h_, qa_, q_, kv_, attn_, low_, a_;
  std::vector<float> ckv_, cgate_, ape_row_;
  std::vector<float> iq_, iw_;
  std::vector<std::vector<int32_t>> isel_;  // per token: selected compressed rows
  std::vector<uint8_t> iall_;               // per token: 1 = every visible row
  std::vector<float> u_, rlog_, wts_, moe_, sg_, su_, smid_, sh_, f_, z_;
  std::vector<int32_t> ids_;
  std::vector<float> mtp_e_;
};

}  // namespace fp::cpu
