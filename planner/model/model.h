// fp::Model: an opened DS4 GGUF (plus an optional antirez MTP file) with its config,
// validated tensor table and every tensor bound by role, so executors and the planner
// write `m.layer(7).attn_q_b` instead of building names. Both namings resolve to the
// same struct: antirez's `mtp.0.*` file and llama.cpp's in-file `blk.{n_layer}.*`.
//
// Opening validates: a file whose tensors do not match its metadata is refused with
// every mismatch named. A model without MTP tensors opens; mtp_available() is false
// and mtp_notice() says why, for the caller to print once.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "planner/gguf/gguf.h"
#include "planner/model/config.h"

namespace fp {

// A tensor and the file that holds it (tensors of the separate MTP file live there).
struct TensorRef {
  const gguf::File* file = nullptr;
  const gguf::TensorInfo* info = nullptr;

  explicit operator bool() const { return info != nullptr; }
  const std::string& name() const { return info->name; }
  DType type() const { return info->type; }
  int64_t ne(int i) const { return info->ne[i]; }
  std::span<const uint8_t> bytes() const { return file->bytes(*info); }
};

// One decoder layer (MODEL.md §3.3). Members a layer kind lacks stay empty: the
// compressor on SWA layers, the indexer off CSA layers, tid2eid off hash layers,
// exp_probs_b on hash layers.
struct LayerTensors {
  TensorRef hc_attn_fn, hc_attn_scale, hc_attn_base;
  TensorRef attn_norm, attn_q_a, attn_q_a_norm, attn_q_b, attn_kv, attn_kv_a_norm, attn_sinks;
  TensorRef attn_output_a, attn_output_b;
  TensorRef attn_compressor_ape, attn_compressor_kv, attn_compressor_gate, attn_compressor_norm;
  TensorRef indexer_attn_q_b, indexer_proj;
  TensorRef indexer_compressor_ape, indexer_compressor_kv, indexer_compressor_gate, indexer_compressor_norm;
  TensorRef hc_ffn_fn, hc_ffn_scale, hc_ffn_base, ffn_norm;
  TensorRef ffn_gate_inp, exp_probs_b, ffn_gate_tid2eid;
  TensorRef ffn_gate_exps, ffn_up_exps, ffn_down_exps;
  TensorRef ffn_gate_shexp, ffn_up_shexp, ffn_down_shexp;
};

struct GlobalTensors {
  TensorRef token_embd, output_hc_fn, output_hc_base, output_hc_scale, output_norm, output;
};

// The MTP block, whichever layout it came from (MODEL.md §7, §3.5).
struct MtpTensors {
  MtpLayout layout = MtpLayout::None;
  LayerTensors layer;
  // Input projections. Separate layout: e_proj and h_proj [n_embd, n_embd]. In-file
  // layout: eh_proj [2·n_embd, n_embd] whose input columns [0, n_embd) take the
  // embedding part and [n_embd, 2·n_embd) the hidden part; e_proj/h_proj stay empty.
  TensorRef e_proj, h_proj, eh_proj;
  TensorRef enorm, hnorm;
  TensorRef norm;                                   // mtp.0.norm | nextn.shared_head_norm | output_norm
  TensorRef hc_head_fn, hc_head_base, hc_head_scale;  // own (separate) | the trunk's output_hc_* (in-file)
  TensorRef embed, head;                            // token_embd / output unless nextn overrides exist
};

struct ModelOpenOptions {
  std::string mtp_path;            // antirez MTP GGUF (--mtp); empty: none
  bool allow_header_only = false;  // plan from a header-only synth file; bytes() then throws
};

class Model {
 public:
  static Model open(const std::string& path, const ModelOpenOptions& opts = {});
  // From files already open (tests, tools that opened the file for other reasons).
  static Model from_files(gguf::File main, std::unique_ptr<gguf::File> mtp = nullptr);

  const ModelConfig& config() const { return cfg_; }
  const gguf::File& file() const { return *main_; }
  const gguf::File* mtp_file() const { return mtp_file_.get(); }
  const GlobalTensors& globals() const { return globals_; }
  const LayerTensors& layer(uint32_t l) const;  // l < n_layer
  bool mtp_available() const { return mtp_.layout != MtpLayout::None; }
  const MtpTensors& mtp() const;                // throws when MTP is unavailable
  // Empty when MTP is available, else one line saying why it is not.
  const std::string& mtp_notice() const { return mtp_notice_; }
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  Model() = default;
  void bind();

  std::unique_ptr<gguf::File> main_, mtp_file_;
  ModelConfig cfg_;
  GlobalTensors globals_;
  std::vector<LayerTensors> layers_;
  MtpTensors mtp_;
  std::string mtp_notice_;
  std::vector<std::string> warnings_;
};

}  // namespace fp
