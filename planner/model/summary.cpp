// summarize_model: config, sizes and per-token read volume of a DS4 GGUF.
#include "planner/model/summary.h"

#include <cstdio>

#include "ops/core/error.h"
#include "planner/model/tensors.h"

namespace fp {
namespace {

// Bytes one decode step reads of tensor `t` in role `role`.
uint64_t bytes_per_token(const ModelConfig& c, const TensorSpec& s, const gguf::TensorInfo& t) {
  if (s.role == "token_embd" || s.role == "nextn.embed_tokens" || s.role == "ffn_gate_tid2eid")
    return uint64_t(row_bytes(t.type, t.ne[0]));  // one row, indexed by the token id
  if (s.role == "ffn_gate_exps" || s.role == "ffn_up_exps" || s.role == "ffn_down_exps")
    return t.n_bytes / c.n_expert * c.n_expert_used;  // the experts the router picks
  return t.n_bytes;
}

// Decimal units for read volumes (they divide into GB/s), binary for file sizes.
std::string gb(uint64_t b) {
  const double x = double(b);
  if (x >= 1e9) return str(std::fixed, std::setprecision(3), x / 1e9, " GB");
  if (x >= 1e6) return str(std::fixed, std::setprecision(3), x / 1e6, " MB");
  return str(std::fixed, std::setprecision(3), x / 1e3, " kB");
}
std::string gib(uint64_t b) {
  const double x = double(b);
  if (x >= double(1ull << 30)) return str(std::fixed, std::setprecision(3), x / double(1ull << 30), " GiB");
  if (x >= double(1ull << 20)) return str(std::fixed, std::setprecision(3), x / double(1ull << 20), " MiB");
  return str(std::fixed, std::setprecision(3), x / 1024, " KiB");
}
std::string count(uint64_t n) {
  const double x = double(n);
  if (x >= 1e9) return str(std::fixed, std::setprecision(3), x / 1e9, " B");
  if (x >= 1e6) return str(std::fixed, std::setprecision(3), x / 1e6, " M");
  return str(n);
}

}  // namespace

ModelSummary summarize_model(const gguf::File& f, const gguf::File* mtp) {
  ModelSummary s;
  for (const gguf::File* file : {&f, mtp}) {
    if (!file) continue;
    for (const auto& t : file->tensors()) {
      s.n_params += uint64_t(t.n_elements());
      s.tensor_bytes += t.n_bytes;
      auto& d = s.by_dtype[dtype_name(t.type)];
      ++d.tensors;
      d.bytes += t.n_bytes;
    }
  }
  try {
    s.config = read_model_config(f, mtp);
  } catch (const Error& e) {
    s.errors.push_back(e.what());
    return s;
  }
  const ModelConfig& c = *s.config;
  Validation v = check_model(f, c, mtp);
  s.errors = std::move(v.errors);
  s.warnings = std::move(v.warnings);

  const int32_t mtp_layer = int32_t(c.n_layer);
  for (const TensorSpec& spec : expected_tensors(c)) {
    const gguf::File* file = spec.in_mtp_file ? mtp : &f;
    const gguf::TensorInfo* t = file ? file->tensor(spec.name) : nullptr;
    if (!t) continue;
    const uint64_t b = bytes_per_token(c, spec, *t);
    if (spec.layer == mtp_layer) s.mtp_bytes_per_token += b;
    else s.decode_bytes_per_token += b;
  }
  if (c.mtp == MtpLayout::None) {
    s.mtp_notice = "no MTP block: MTP speculative decoding is unavailable";
  } else {
    // A draft step also reads an embedding row and the whole output head (shared with
    // the trunk unless the in-file block brings its own, counted above).
    const bool own_embed = mtp_layer >= 0 && f.tensor(str("blk.", mtp_layer, ".nextn.embed_tokens.weight"));
    const bool own_head = f.tensor(str("blk.", mtp_layer, ".nextn.shared_head_head.weight")) != nullptr;
    if (const auto* e = f.tensor("token_embd.weight"); e && !own_embed) s.mtp_bytes_per_token += uint64_t(row_bytes(e->type, e->ne[0]));
    if (const auto* o = f.tensor("output.weight"); o && !own_head) s.mtp_bytes_per_token += o->n_bytes;
  }
  return s;
}

std::string summary_text(const ModelSummary& s) {
  std::string out = "\nDS4 model\n";
  auto line = [&](auto&&... a) { out += str("  ", a..., "\n"); };
  if (s.config) {
    const ModelConfig& c = *s.config;
    if (!c.name.empty()) line("name             ", c.name);
    line("layers           ", c.n_layer, " (SWA ", c.count(LayerKind::SWA), ", CSA ", c.count(LayerKind::CSA), ", HCA ",
         c.count(LayerKind::HCA), "), hash-routed ", c.hash_layer_count);
    std::string ratios;
    for (size_t l = 0; l < c.compress_ratios.size(); ++l) ratios += str(l ? "," : "", c.compress_ratios[l]);
    line("compress ratios  ", ratios);
    line("hidden           ", c.n_embd, ", vocab ", c.n_vocab, ", context ", c.context_length);
    line("attention        ", c.n_head, " heads x ", c.head_dim, " (1 shared K=V head), rope ", c.rope_dim, ", q LoRA ",
         c.q_lora_rank, ", out ", c.o_groups, " groups x ", c.o_lora_rank, ", window ", c.sliding_window);
    line("indexer          ", c.indexer_heads, " heads x ", c.indexer_head_dim, ", top-k ", c.indexer_top_k);
    line("experts          ", c.n_expert, " (", c.n_expert_used, " used, ", c.n_expert_shared, " shared), width ", c.expert_ff,
         ", scale ", c.expert_weights_scale);
    line("hyper-connection ", c.hc_count, " streams, ", c.hc_sinkhorn_iters, " Sinkhorn iterations");
    line("MTP              ", mtp_layout_name(c.mtp), c.mtp == MtpLayout::InFile ? str(" (blk.", c.n_layer, ")") : "");
  }
  line("parameters       ", count(s.n_params));
  line("tensor bytes     ", s.tensor_bytes, " (", gib(s.tensor_bytes), ")");
  for (const auto& [name, d] : s.by_dtype)
    out += str("    ", name, std::string(name.size() < 8 ? 8 - name.size() : 0, ' '), " ", d.tensors, " tensors, ", gib(d.bytes), "\n");
  if (s.config) {
    line("read per token   ", gb(s.decode_bytes_per_token), " (decode, trunk)");
    if (s.mtp_bytes_per_token) line("read per draft   ", gb(s.mtp_bytes_per_token), " (MTP block)");
  }
  if (!s.mtp_notice.empty()) line("note             ", s.mtp_notice);
  if (s.errors.empty()) {
    line("validation       ok");
  } else {
    line("validation       ", s.errors.size(), " error(s)");
    for (const auto& e : s.errors) out += "    " + e + "\n";
  }
  for (const auto& w : s.warnings) out += "  warning: " + w + "\n";
  return out;
}

nlohmann::ordered_json summary_json(const ModelSummary& s) {
  nlohmann::ordered_json j;
  if (s.config) {
    const ModelConfig& c = *s.config;
    nlohmann::ordered_json k;
    k["n_layer"] = c.n_layer;
    k["n_embd"] = c.n_embd;
    k["n_vocab"] = c.n_vocab;
    k["n_head"] = c.n_head;
    k["head_dim"] = c.head_dim;
    k["rope_dim"] = c.rope_dim;
    k["q_lora_rank"] = c.q_lora_rank;
    k["o_groups"] = c.o_groups;
    k["o_lora_rank"] = c.o_lora_rank;
    k["sliding_window"] = c.sliding_window;
    k["compress_ratios"] = c.compress_ratios;
    std::vector<std::string> kinds;
    for (uint32_t l = 0; l < c.n_layer; ++l) kinds.push_back(layer_kind_name(c.layer_kind(l)));
    k["layer_kinds"] = kinds;
    k["indexer_heads"] = c.indexer_heads;
    k["indexer_head_dim"] = c.indexer_head_dim;
    k["indexer_top_k"] = c.indexer_top_k;
    k["n_expert"] = c.n_expert;
    k["n_expert_used"] = c.n_expert_used;
    k["n_expert_shared"] = c.n_expert_shared;
    k["expert_ff"] = c.expert_ff;
    k["hash_layer_count"] = c.hash_layer_count;
    k["hc_count"] = c.hc_count;
    k["context_length"] = c.context_length;
    k["mtp"] = mtp_layout_name(c.mtp);
    j["config"] = std::move(k);
  } else {
    j["config"] = nullptr;
  }
  j["n_params"] = s.n_params;
  j["tensor_bytes"] = s.tensor_bytes;
  nlohmann::ordered_json d = nlohmann::ordered_json::object();
  for (const auto& [name, b] : s.by_dtype) d[name] = {{"tensors", b.tensors}, {"bytes", b.bytes}};
  j["bytes_by_dtype"] = std::move(d);
  j["decode_bytes_per_token"] = s.decode_bytes_per_token;
  j["mtp_bytes_per_token"] = s.mtp_bytes_per_token;
  j["valid"] = s.errors.empty();
  j["errors"] = s.errors;
  j["warnings"] = s.warnings;
  if (!s.mtp_notice.empty()) j["notice"] = s.mtp_notice;
  return j;
}

}  // namespace fp
