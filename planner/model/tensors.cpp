// The expected DS4 tensor table and its validation (MODEL.md §3.2-3.5).
//
// One table of per-layer roles drives everything: which layers carry a role (all,
// compressed, CSA only, hash-routed, top-k routed), its shape from the config, and its
// class. The trunk, the antirez MTP file (`mtp.0.` prefix) and llama.cpp's in-file MTP
// block (`blk.{n_layer}.` prefix) all reuse it; only the MTP extras differ.
#include "planner/model/tensors.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <set>
#include <unordered_map>

#include "ops/core/error.h"
#include "ops/quant/dequant.h"

namespace fp {
namespace {

enum class Where : uint8_t { All, Compressed, Csa, Hash, TopK };

struct LayerRole {
  const char* role;
  const char* suffix;  // ".weight" or ".bias"
  Where where;
  TensorClass cls;
  std::function<std::vector<int64_t>(const ModelConfig&, uint32_t l)> shape;
};

int64_t ratio_width(const ModelConfig& c, uint32_t l) {  // compressor outputs: 2 slots when overlapping (CSA)
  return (c.layer_kind(l) == LayerKind::CSA ? 2 : 1) * int64_t(c.head_dim);
}

const std::vector<LayerRole>& layer_roles() {
  using C = const ModelConfig&;
  using V = std::vector<int64_t>;
  static const std::vector<LayerRole> roles = {
      {"hc_attn_fn", ".weight", Where::All, TensorClass::Matrix, [](C c, uint32_t) { return V{c.hc_dim(), c.hc_mix()}; }},
      {"hc_attn_scale", ".weight", Where::All, TensorClass::Vector, [](C, uint32_t) { return V{3}; }},
      {"hc_attn_base", ".weight", Where::All, TensorClass::Vector, [](C c, uint32_t) { return V{c.hc_mix()}; }},
      {"attn_norm", ".weight", Where::All, TensorClass::Vector, [](C c, uint32_t) { return V{c.n_embd}; }},
      {"attn_q_a", ".weight", Where::All, TensorClass::Matrix, [](C c, uint32_t) { return V{c.n_embd, c.q_lora_rank}; }},
      {"attn_q_a_norm", ".weight", Where::All, TensorClass::Vector, [](C c, uint32_t) { return V{c.q_lora_rank}; }},
      {"attn_q_b", ".weight", Where::All, TensorClass::Matrix, [](C c, uint32_t) { return V{c.q_lora_rank, c.q_dim()}; }},
      {"attn_kv", ".weight", Where::All, TensorClass::Matrix, [](C c, uint32_t) { return V{c.n_embd, c.head_dim}; }},
      {"attn_kv_a_norm", ".weight", Where::All, TensorClass::Vector, [](C c, uint32_t) { return V{c.head_dim}; }},
      {"attn_sinks", ".weight", Where::All, TensorClass::Vector, [](C c, uint32_t) { return V{c.n_head}; }},
      {"attn_output_a", ".weight", Where::All, TensorClass::Matrix,
       [](C c, uint32_t) { return V{c.o_group_in(), int64_t(c.o_groups) * c.o_lora_rank}; }},
      {"attn_output_b", ".weight", Where::All, TensorClass::Matrix,
       [](C c, uint32_t) { return V{int64_t(c.o_groups) * c.o_lora_rank, c.n_embd}; }},
      {"attn_compressor_ape", ".weight", Where::Compressed, TensorClass::Matrix,
       [](C c, uint32_t l) { return V{ratio_width(c, l), c.compress_ratio(l)}; }},
      {"attn_compressor_kv", ".weight", Where::Compressed, TensorClass::Matrix,
       [](C c, uint32_t l) { return V{c.n_embd, ratio_width(c, l)}; }},
      {"attn_compressor_gate", ".weight", Where::Compressed, TensorClass::Matrix,
       [](C c, uint32_t l) { return V{c.n_embd, ratio_width(c, l)}; }},
      {"attn_compressor_norm", ".weight", Where::Compressed, TensorClass::Vector, [](C c, uint32_t) { return V{c.head_dim}; }},
      {"indexer.attn_q_b", ".weight", Where::Csa, TensorClass::Matrix, [](C c, uint32_t) { return V{c.q_lora_rank, c.indexer_q_dim()}; }},
      {"indexer.proj", ".weight", Where::Csa, TensorClass::Matrix, [](C c, uint32_t) { return V{c.n_embd, c.indexer_heads}; }},
      {"indexer_compressor_ape", ".weight", Where::Csa, TensorClass::Matrix,
       [](C c, uint32_t) { return V{2 * int64_t(c.indexer_head_dim), kCsaRatio}; }},
      {"indexer_compressor_kv", ".weight", Where::Csa, TensorClass::Matrix,
       [](C c, uint32_t) { return V{c.n_embd, 2 * int64_t(c.indexer_head_dim)}; }},
      {"indexer_compressor_gate", ".weight", Where::Csa, TensorClass::Matrix,
       [](C c, uint32_t) { return V{c.n_embd, 2 * int64_t(c.indexer_head_dim)}; }},
      {"indexer_compressor_norm", ".weight", Where::Csa, TensorClass::Vector, [](C c, uint32_t) { return V{c.indexer_head_dim}; }},
      {"hc_ffn_fn", ".weight", Where::All, TensorClass::Matrix, [](C c, uint32_t) { return V{c.hc_dim(), c.hc_mix()}; }},
      {"hc_ffn_scale", ".weight", Where::All, TensorClass::Vector, [](C, uint32_t) { return V{3}; }},
      {"hc_ffn_base", ".weight", Where::All, TensorClass::Vector, [](C c, uint32_t) { return V{c.hc_mix()}; }},
      {"ffn_norm", ".weight", Where::All, TensorClass::Vector, [](C c, uint32_t) { return V{c.n_embd}; }},
      {"ffn_gate_inp", ".weight", Where::All, TensorClass::Matrix, [](C c, uint32_t) { return V{c.n_embd, c.n_expert}; }},
      {"exp_probs_b", ".bias", Where::TopK, TensorClass::Vector, [](C c, uint32_t) { return V{c.n_expert}; }},
      {"ffn_gate_tid2eid", ".weight", Where::Hash, TensorClass::Index, [](C c, uint32_t) { return V{c.n_expert_used, c.n_vocab}; }},
      {"ffn_gate_exps", ".weight", Where::All, TensorClass::Matrix, [](C c, uint32_t) { return V{c.n_embd, c.expert_ff, c.n_expert}; }},
      {"ffn_up_exps", ".weight", Where::All, TensorClass::Matrix, [](C c, uint32_t) { return V{c.n_embd, c.expert_ff, c.n_expert}; }},
      {"ffn_down_exps", ".weight", Where::All, TensorClass::Matrix, [](C c, uint32_t) { return V{c.expert_ff, c.n_embd, c.n_expert}; }},
      {"ffn_gate_shexp", ".weight", Where::All, TensorClass::Matrix, [](C c, uint32_t) { return V{c.n_embd, c.shexp_ff()}; }},
      {"ffn_up_shexp", ".weight", Where::All, TensorClass::Matrix, [](C c, uint32_t) { return V{c.n_embd, c.shexp_ff()}; }},
      {"ffn_down_shexp", ".weight", Where::All, TensorClass::Matrix, [](C c, uint32_t) { return V{c.shexp_ff(), c.n_embd}; }},
  };
  return roles;
}

bool present(Where w, const ModelConfig& c, uint32_t l) {
  const bool mtp = l == c.n_layer;  // SWA-only, never hash-routed (MODEL.md §7)
  switch (w) {
    case Where::All: return true;
    case Where::Compressed: return !mtp && c.layer_kind(l) != LayerKind::SWA;
    case Where::Csa: return !mtp && c.layer_kind(l) == LayerKind::CSA;
    case Where::Hash: return !mtp && c.hash_routed(l);
    case Where::TopK: return mtp || !c.hash_routed(l);
  }
  return false;
}

TensorSpec make(std::string name, std::string role, int32_t layer, std::vector<int64_t> ne, TensorClass cls,
                bool optional = false, bool in_mtp_file = false) {
  TensorSpec s;
  s.name = std::move(name);
  s.role = std::move(role);
  s.layer = layer;
  s.n_dims = uint32_t(ne.size());
  for (size_t i = 0; i < ne.size(); ++i) s.ne[i] = ne[i];
  s.cls = cls;
  s.optional = optional;
  s.in_mtp_file = in_mtp_file;
  return s;
}

void add_layer(std::vector<TensorSpec>& out, const ModelConfig& c, uint32_t l, const std::string& prefix, bool in_mtp_file) {
  for (const auto& r : layer_roles()) {
    if (!present(r.where, c, l)) continue;
    out.push_back(make(prefix + r.role + r.suffix, r.role, int32_t(l), r.shape(c, l), r.cls, false, in_mtp_file));
  }
}

}  // namespace

std::vector<TensorSpec> expected_tensors(const ModelConfig& c) {
  std::vector<TensorSpec> out;
  using V = std::vector<int64_t>;
  const auto M = TensorClass::Matrix, Vec = TensorClass::Vector;
  out.push_back(make("token_embd.weight", "token_embd", -1, V{c.n_embd, c.n_vocab}, M));
  out.push_back(make("output_hc_base.weight", "output_hc_base", -1, V{c.hc_count}, Vec));
  out.push_back(make("output_hc_fn.weight", "output_hc_fn", -1, V{c.hc_dim(), c.hc_count}, M));
  out.push_back(make("output_hc_scale.weight", "output_hc_scale", -1, V{1}, Vec));
  out.push_back(make("output_norm.weight", "output_norm", -1, V{c.n_embd}, Vec));
  out.push_back(make("output.weight", "output", -1, V{c.n_embd, c.n_vocab}, M));
  for (uint32_t l = 0; l < c.n_layer; ++l) add_layer(out, c, l, str("blk.", l, "."), false);

  const int32_t m = int32_t(c.n_layer);
  if (c.mtp == MtpLayout::Separate) {
    // antirez: own projections, norms and HC head, then one full layer (MODEL.md §3.4).
    const std::string p = "mtp.0.";
    out.push_back(make(p + "hc_head_fn.weight", "hc_head_fn", m, V{c.hc_dim(), c.hc_count}, M, false, true));
    out.push_back(make(p + "hc_head_base.weight", "hc_head_base", m, V{c.hc_count}, Vec, false, true));
    out.push_back(make(p + "hc_head_scale.weight", "hc_head_scale", m, V{1}, Vec, false, true));
    out.push_back(make(p + "e_proj.weight", "e_proj", m, V{c.n_embd, c.n_embd}, M, false, true));
    out.push_back(make(p + "h_proj.weight", "h_proj", m, V{c.n_embd, c.n_embd}, M, false, true));
    out.push_back(make(p + "enorm.weight", "enorm", m, V{c.n_embd}, Vec, false, true));
    out.push_back(make(p + "hnorm.weight", "hnorm", m, V{c.n_embd}, Vec, false, true));
    out.push_back(make(p + "norm.weight", "norm", m, V{c.n_embd}, Vec, false, true));
    add_layer(out, c, c.n_layer, p, true);
  } else if (c.mtp == MtpLayout::InFile) {
    // llama.cpp: one [2·n_embd, n_embd] projection over concat(enorm(e), hnorm(h)); the
    // HC head is the trunk's; final norm, embedding and head are optional overrides.
    const std::string p = str("blk.", m, ".");
    out.push_back(make(p + "nextn.eh_proj.weight", "nextn.eh_proj", m, V{2 * int64_t(c.n_embd), c.n_embd}, M));
    out.push_back(make(p + "nextn.enorm.weight", "nextn.enorm", m, V{c.n_embd}, Vec));
    out.push_back(make(p + "nextn.hnorm.weight", "nextn.hnorm", m, V{c.n_embd}, Vec));
    out.push_back(make(p + "nextn.shared_head_norm.weight", "nextn.shared_head_norm", m, V{c.n_embd}, Vec, true));
    out.push_back(make(p + "nextn.embed_tokens.weight", "nextn.embed_tokens", m, V{c.n_embd, c.n_vocab}, M, true));
    out.push_back(make(p + "nextn.shared_head_head.weight", "nextn.shared_head_head", m, V{c.n_embd, c.n_vocab}, M, true));
    add_layer(out, c, c.n_layer, p, false);
  }
  return out;
}

std::string shape_str(const std::array<int64_t, 4>& ne, uint32_t n_dims) {
  std::string s = "[";
  for (uint32_t i = 0; i < std::max<uint32_t>(n_dims, 1); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

bool dtype_allowed(TensorClass cls, DType t, int64_t ne0, std::string* why) {
  auto no = [&](std::string w) { if (why) *why = std::move(w); return false; };
  switch (cls) {
    case TensorClass::Vector:
      return t == DType::F32 || no("F32");
    case TensorClass::Index:
      return t == DType::I32 || no("I32");
    case TensorClass::Matrix: {
      const TypeTraits& tr = traits(t);
      if (!can_dequantize(t)) return no("a dtype flashplan can dequantise");
      if (ne0 % tr.block != 0) return no(str("a dtype whose block (", tr.block, " for ", tr.name, ") divides the row length ", ne0));
      return true;
    }
  }
  return no("?");
}

Validation check_model(const gguf::File& f, const ModelConfig& c, const gguf::File* mtp) {
  Validation v;
  const auto specs = expected_tensors(c);
  std::set<std::string> expected_main, expected_mtp;
  for (const auto& s : specs) {
    const gguf::File* file = s.in_mtp_file ? mtp : &f;
    if (!file) {
      v.errors.push_back(str(s.name, ": expected in an --mtp file, none given"));
      continue;
    }
    (s.in_mtp_file ? expected_mtp : expected_main).insert(s.name);
    const gguf::TensorInfo* t = file->tensor(s.name);
    if (!t) {
      if (!s.optional)
        v.errors.push_back(str(s.name, ": missing, expected shape ", shape_str(s.ne, s.n_dims), " (", file->path(), ")"));
      continue;
    }
    if (t->ne != s.ne) {
      v.errors.push_back(str(s.name, ": shape ", shape_str(t->ne, t->n_dims), ", expected ", shape_str(s.ne, s.n_dims),
                             " (", file->path(), ")"));
      continue;
    }
    std::string why;
    if (!dtype_allowed(s.cls, t->type, t->ne[0], &why)) {
      v.errors.push_back(str(s.name, ": dtype ", dtype_name(t->type), ", expected ", why, " (", file->path(), ")"));
      continue;
    }
    // Hash-routing ids index the expert tensors directly: check them once here.
    if (s.cls == TensorClass::Index && !file->header_only()) {
      const auto bytes = file->bytes(*t);
      const int64_t k = t->ne[0], rows = t->ne[1];
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t j = 0; j < k; ++j) {
          int32_t id;
          std::memcpy(&id, bytes.data() + 4 * (r * k + j), 4);
          if (id < 0 || uint32_t(id) >= c.n_expert) {
            v.errors.push_back(str(s.name, ": token ", r, " routes to expert ", id, ", expected an id in [0, ",
                                   c.n_expert, ") (", file->path(), ")"));
            r = rows;
            break;
          }
        }
      }
    }
  }

  // Tensors nothing reads: harmless, but worth a word (e.g. a draft naming).
  auto unexpected = [&](const gguf::File& file, const std::set<std::string>& known) {
    std::vector<std::string> extra;
    for (const auto& t : file.tensors())
      if (!known.count(t.name)) extra.push_back(t.name);
    if (extra.empty()) return;
    std::string list;
    for (size_t i = 0; i < std::min<size_t>(extra.size(), 5); ++i) list += (i ? ", " : "") + extra[i];
    if (extra.size() > 5) list += str(", ... (", extra.size() - 5, " more)");
    v.warnings.push_back(str(file.path(), ": ", extra.size(), " tensor(s) not used by DS4 and ignored: ", list));
  };
  unexpected(f, expected_main);
  if (mtp) unexpected(*mtp, expected_mtp);
  return v;
}

std::vector<std::string> validate_model(const gguf::File& f, const ModelConfig& c, const gguf::File* mtp) {
  Validation v = check_model(f, c, mtp);
  if (!v.ok()) {
    std::string msg = v.errors[0];
    const size_t shown = std::min<size_t>(v.errors.size(), 8);
    for (size_t i = 1; i < shown; ++i) msg += "\n  " + v.errors[i];
    if (v.errors.size() > shown) msg += str("\n  ... and ", v.errors.size() - shown, " more tensor errors");
    fail(msg);
  }
  return std::move(v.warnings);
}

}  // namespace fp
