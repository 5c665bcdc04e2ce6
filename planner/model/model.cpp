// fp::Model: open, read the config, validate the tensor table, bind tensors by role.
#include "planner/model/model.h"

#include <unordered_map>

#include "ops/core/error.h"
#include "planner/model/tensors.h"

namespace fp {
namespace {

using LayerMember = TensorRef LayerTensors::*;

// Role (as in tensors.cpp) → member. A role missing here would leave a member unbound,
// which the test of every layer kind's bindings catches.
const std::unordered_map<std::string, LayerMember>& layer_members() {
  static const std::unordered_map<std::string, LayerMember> m = {
      {"hc_attn_fn", &LayerTensors::hc_attn_fn},
      {"hc_attn_scale", &LayerTensors::hc_attn_scale},
      {"hc_attn_base", &LayerTensors::hc_attn_base},
      {"attn_norm", &LayerTensors::attn_norm},
      {"attn_q_a", &LayerTensors::attn_q_a},
      {"attn_q_a_norm", &LayerTensors::attn_q_a_norm},
      {"attn_q_b", &LayerTensors::attn_q_b},
      {"attn_kv", &LayerTensors::attn_kv},
      {"attn_kv_a_norm", &LayerTensors::attn_kv_a_norm},
      {"attn_sinks", &LayerTensors::attn_sinks},
      {"attn_output_a", &LayerTensors::attn_output_a},
      {"attn_output_b", &LayerTensors::attn_output_b},
      {"attn_compressor_ape", &LayerTensors::attn_compressor_ape},
      {"attn_compressor_kv", &LayerTensors::attn_compressor_kv},
      {"attn_compressor_gate", &LayerTensors::attn_compressor_gate},
      {"attn_compressor_norm", &LayerTensors::attn_compressor_norm},
      {"indexer.attn_q_b", &LayerTensors::indexer_attn_q_b},
      {"indexer.proj", &LayerTensors::indexer_proj},
      {"indexer_compressor_ape", &LayerTensors::indexer_compressor_ape},
      {"indexer_compressor_kv", &LayerTensors::indexer_compressor_kv},
      {"indexer_compressor_gate", &LayerTensors::indexer_compressor_gate},
      {"indexer_compressor_norm", &LayerTensors::indexer_compressor_norm},
      {"hc_ffn_fn", &LayerTensors::hc_ffn_fn},
      {"hc_ffn_scale", &LayerTensors::hc_ffn_scale},
      {"hc_ffn_base", &LayerTensors::hc_ffn_base},
      {"ffn_norm", &LayerTensors::ffn_norm},
      {"ffn_gate_inp", &LayerTensors::ffn_gate_inp},
      {"exp_probs_b", &LayerTensors::exp_probs_b},
      {"ffn_gate_tid2eid", &LayerTensors::ffn_gate_tid2eid},
      {"ffn_gate_exps", &LayerTensors::ffn_gate_exps},
      {"ffn_up_exps", &LayerTensors::ffn_up_exps},
      {"ffn_down_exps", &LayerTensors::ffn_down_exps},
      {"ffn_gate_shexp", &LayerTensors::ffn_gate_shexp},
      {"ffn_up_shexp", &LayerTensors::ffn_up_shexp},
      {"ffn_down_shexp", &LayerTensors::ffn_down_shexp},
  };
  return m;
}

}  // namespace

Model Model::open(const std::string& path, const ModelOpenOptions& opts) {
  gguf::OpenOptions o;
  o.allow_header_only = opts.allow_header_only;
  std::unique_ptr<gguf::File> mtp;
  if (!opts.mtp_path.empty()) mtp = std::make_unique<gguf::File>(gguf::File::open(opts.mtp_path, o));
  return from_files(gguf::File::open(path, o), std::move(mtp));
}

Model Model::from_files(gguf::File main, std::unique_ptr<gguf::File> mtp) {
  Model m;
  m.main_ = std::make_unique<gguf::File>(std::move(main));
  m.mtp_file_ = std::move(mtp);
  m.cfg_ = read_model_config(*m.main_, m.mtp_file_.get());
  m.warnings_ = validate_model(*m.main_, m.cfg_, m.mtp_file_.get());
  m.bind();
  return m;
}

void Model::bind() {
  const ModelConfig& c = cfg_;
  layers_.assign(c.n_layer, LayerTensors{});
  mtp_ = MtpTensors{};
  mtp_.layout = c.mtp;
  const auto& members = layer_members();
  for (const TensorSpec& s : expected_tensors(c)) {
    const gguf::File* file = s.in_mtp_file ? mtp_file_.get() : main_.get();
    TensorRef ref{file, file->tensor(s.name)};
    if (!ref) continue;  // an optional tensor (validation refused missing required ones)
    if (s.layer < 0) {
      GlobalTensors& g = globals_;
      if (s.role == "token_embd") g.token_embd = ref;
      else if (s.role == "output_hc_fn") g.output_hc_fn = ref;
      else if (s.role == "output_hc_base") g.output_hc_base = ref;
      else if (s.role == "output_hc_scale") g.output_hc_scale = ref;
      else if (s.role == "output_norm") g.output_norm = ref;
      else if (s.role == "output") g.output = ref;
      else fail("internal: unbound global tensor role ", s.role);
      continue;
    }
    if (auto it = members.find(s.role); it != members.end()) {
      LayerTensors& lt = uint32_t(s.layer) < c.n_layer ? layers_[s.layer] : mtp_.layer;
      lt.*(it->second) = ref;
      continue;
    }
    // MTP extras.
    if (s.role == "e_proj") mtp_.e_proj = ref;
    else if (s.role == "h_proj") mtp_.h_proj = ref;
    else if (s.role == "nextn.eh_proj") mtp_.eh_proj = ref;
    else if (s.role == "enorm" || s.role == "nextn.enorm") mtp_.enorm = ref;
    else if (s.role == "hnorm" || s.role == "nextn.hnorm") mtp_.hnorm = ref;
    else if (s.role == "norm" || s.role == "nextn.shared_head_norm") mtp_.norm = ref;
    else if (s.role == "hc_head_fn") mtp_.hc_head_fn = ref;
    else if (s.role == "hc_head_base") mtp_.hc_head_base = ref;
    else if (s.role == "hc_head_scale") mtp_.hc_head_scale = ref;
    else if (s.role == "nextn.embed_tokens") mtp_.embed = ref;
    else if (s.role == "nextn.shared_head_head") mtp_.head = ref;
    else fail("internal: unbound tensor role ", s.role);
  }

  if (c.mtp == MtpLayout::None) {
    mtp_notice_ = str(main_->path(), ": no MTP block (neither blk.", c.n_layer,
                      ".nextn.* in the file nor an --mtp file): MTP speculative decoding is unavailable");
    return;
  }
  // The MTP block shares the trunk's embedding and head; the in-file layout also
  // shares the HC head and, without shared_head_norm, the final norm (MODEL.md §3.5).
  if (!mtp_.embed) mtp_.embed = globals_.token_embd;
  if (!mtp_.head) mtp_.head = globals_.output;
  if (!mtp_.norm) mtp_.norm = globals_.output_norm;
  if (!mtp_.hc_head_fn) {
    mtp_.hc_head_fn = globals_.output_hc_fn;
    mtp_.hc_head_base = globals_.output_hc_base;
    mtp_.hc_head_scale = globals_.output_hc_scale;
  }
}

const LayerTensors& Model::layer(uint32_t l) const {
  if (l >= layers_.size()) fail("layer ", l, ": out of range, the model has ", layers_.size(), " layers");
  return layers_[l];
}

const MtpTensors& Model::mtp() const {
  if (!mtp_available()) fail(mtp_notice_);
  return mtp_;
}

}  // namespace fp
