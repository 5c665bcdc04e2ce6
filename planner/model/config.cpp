// read_model_config: DS4 hyperparameters from `deepseek4.*` GGUF metadata (MODEL.md §2).
//
// Every key MODEL.md lists as required by either upstream reader is required here;
// defaults exist only where MODEL.md says a key is optional (swiglu_clamp_shexp,
// expert_gating_func, expert_group_*, nextn_predict_layers, rope.scaling.type,
// vocab_size via the token list). Values are checked for internal consistency (the
// shapes they imply must be buildable), not against Flash's constants: a 2-layer toy
// and the 43-layer model read the same way. Refuses: another architecture, a second
// KV head, a gating function other than sqrt(softplus), expert groups, more than one
// MTP block.
#include "planner/model/config.h"

#include <cmath>
#include <optional>

#include "ops/core/error.h"

namespace fp {
namespace {

using gguf::Value;
using gguf::ValueType;

// Dimensions beyond this are refused so that a corrupt header cannot make a caller
// allocate absurd buffers from config values alone.
constexpr uint64_t kMaxDim = uint64_t(1) << 24;

bool is_uint_type(ValueType t) {
  return t == ValueType::U8 || t == ValueType::U16 || t == ValueType::U32 || t == ValueType::U64;
}
bool is_sint_type(ValueType t) {
  return t == ValueType::I8 || t == ValueType::I16 || t == ValueType::I32 || t == ValueType::I64;
}
bool is_float_type(ValueType t) { return t == ValueType::F32 || t == ValueType::F64; }

std::string describe(const Value& v) {
  if (v.type == ValueType::ARRAY)
    return str("array[", gguf::value_type_name(v.item_type), ", ", v.array_size(), "]");
  if (is_uint_type(v.type) || v.type == ValueType::BOOL) return str(v.u, " (", gguf::value_type_name(v.type), ")");
  if (is_sint_type(v.type)) return str(v.i, " (", gguf::value_type_name(v.type), ")");
  if (is_float_type(v.type)) return str(v.f, " (", gguf::value_type_name(v.type), ")");
  if (v.type == ValueType::STRING) return str("\"", v.s, "\"");
  return gguf::value_type_name(v.type);
}

// Typed access to `deepseek4.*` keys with errors that name file, key, value, expectation.
class Keys {
 public:
  explicit Keys(const gguf::File& f) : f_(f) {}

  std::string key(std::string_view k) const { return str("deepseek4.", k); }
  const Value* find(std::string_view k) const { return f_.find(key(k)); }

  [[noreturn]] void bad(std::string_view k, const std::string& found, const std::string& expected) const {
    fail(key(k), ": ", found, ", expected ", expected, " (", f_.path(), ")");
  }
  const Value& need(std::string_view k) const {
    const Value* v = find(k);
    if (!v) fail(key(k), ": missing, expected it in the metadata (", f_.path(), ")");
    return *v;
  }

  uint64_t as_uint(std::string_view k, const Value& v, uint64_t lo, uint64_t hi) const {
    uint64_t x = 0;
    if (is_uint_type(v.type)) {
      x = v.u;
    } else if (is_sint_type(v.type)) {
      if (v.i < 0) bad(k, describe(v), str("an integer in [", lo, ", ", hi, "]"));
      x = uint64_t(v.i);
    } else {
      bad(k, describe(v), "an unsigned integer");
    }
    if (x < lo || x > hi) bad(k, describe(v), str("an integer in [", lo, ", ", hi, "]"));
    return x;
  }
  uint32_t u32(std::string_view k, uint64_t lo = 1, uint64_t hi = kMaxDim) const {
    return uint32_t(as_uint(k, need(k), lo, hi));
  }
  std::optional<uint64_t> opt_uint(std::string_view k, uint64_t lo, uint64_t hi) const {
    const Value* v = find(k);
    if (!v) return std::nullopt;
    return as_uint(k, *v, lo, hi);
  }

  float as_float(std::string_view k, const Value& v) const {
    if (!is_float_type(v.type)) bad(k, describe(v), "a float");
    if (!std::isfinite(v.f)) bad(k, describe(v), "a finite float");
    return float(v.f);
  }
  float f32(std::string_view k) const { return as_float(k, need(k)); }
  float positive(std::string_view k) const {
    const float x = f32(k);
    if (!(x > 0)) bad(k, describe(need(k)), "a positive float");
    return x;
  }

  bool boolean(std::string_view k) const {
    const Value& v = need(k);
    if (v.type != ValueType::BOOL) bad(k, describe(v), "a bool");
    return v.u != 0;
  }

  // An integer array (any int item type), each entry in [lo, hi].
  std::vector<uint64_t> uint_array(std::string_view k, uint64_t lo, uint64_t hi) const {
    const Value& v = need(k);
    std::vector<uint64_t> out;
    if (v.type != ValueType::ARRAY) bad(k, describe(v), "an array of integers");
    if (is_uint_type(v.item_type)) {
      out = v.arr_u;
    } else if (is_sint_type(v.item_type)) {
      for (size_t i = 0; i < v.arr_i.size(); ++i) {
        if (v.arr_i[i] < 0) bad(str(k, "[", i, "]"), str(v.arr_i[i]), str("an integer in [", lo, ", ", hi, "]"));
        out.push_back(uint64_t(v.arr_i[i]));
      }
    } else {
      bad(k, describe(v), "an array of integers");
    }
    for (size_t i = 0; i < out.size(); ++i)
      if (out[i] < lo || out[i] > hi) bad(str(k, "[", i, "]"), str(out[i]), str("an integer in [", lo, ", ", hi, "]"));
    return out;
  }

  // A float array of at least `min_len` finite entries; a scalar float stands for
  // that value in every layer (llama.cpp's loader takes either form).
  std::vector<float> float_array(std::string_view k, size_t min_len) const {
    const Value& v = need(k);
    std::vector<float> out;
    if (is_float_type(v.type)) {
      out.assign(min_len, as_float(k, v));
    } else if (v.type == ValueType::ARRAY && is_float_type(v.item_type)) {
      for (double x : v.arr_f) out.push_back(float(x));
    } else {
      bad(k, describe(v), "an array of floats");
    }
    if (out.size() < min_len) bad(k, describe(v), str("at least ", min_len, " entries (one per layer)"));
    for (size_t i = 0; i < out.size(); ++i)
      if (!std::isfinite(out[i]) || out[i] <= 0) bad(str(k, "[", i, "]"), str(out[i]), "a positive finite float");
    return out;
  }

 private:
  const gguf::File& f_;
};

void require(bool ok, const Keys& k, std::string_view key, const std::string& found, const std::string& expected) {
  if (!ok) k.bad(key, found, expected);
}

}  // namespace

const char* layer_kind_name(LayerKind k) {
  switch (k) {
    case LayerKind::SWA: return "SWA";
    case LayerKind::CSA: return "CSA";
    case LayerKind::HCA: return "HCA";
  }
  return "?";
}

const char* mtp_layout_name(MtpLayout m) {
  switch (m) {
    case MtpLayout::None: return "none";
    case MtpLayout::Separate: return "separate";
    case MtpLayout::InFile: return "in-file";
  }
  return "?";
}

uint32_t ModelConfig::compress_ratio(uint32_t l) const {
  if (l == n_layer) return 0;  // the MTP block is sliding-window only
  if (l > n_layer || l >= compress_ratios.size()) fail("layer ", l, ": out of range, the model has ", n_layer, " layers");
  return compress_ratios[l];
}

LayerKind ModelConfig::layer_kind(uint32_t l) const {
  const uint32_t r = compress_ratio(l);
  if (r == 0) return LayerKind::SWA;
  return r == kCsaRatio ? LayerKind::CSA : LayerKind::HCA;
}

uint32_t ModelConfig::count(LayerKind k) const {
  uint32_t n = 0;
  for (uint32_t l = 0; l < n_layer; ++l) n += layer_kind(l) == k;
  return n;
}

ModelConfig read_model_config(const gguf::File& f, const gguf::File* mtp_file) {
  ModelConfig c;
  {
    const Value* arch = f.find("general.architecture");
    if (!arch) fail("general.architecture: missing, expected \"deepseek4\" (", f.path(), ")");
    if (arch->type != ValueType::STRING || arch->s != "deepseek4") {
      std::string hint;
      if (arch->type == ValueType::STRING && arch->s == "deepseek-v4-flash")
        hint = "; this name comes from an early llama.cpp PR draft whose files no reader accepts";
      fail("general.architecture: ", describe(*arch), ", expected \"deepseek4\"", hint, " (", f.path(), ")");
    }
    if (const Value* n = f.find("general.name"); n && n->type == ValueType::STRING) c.name = n->s;
  }
  const Keys k(f);

  // ---- layers and MTP (MODEL.md §2.2) ----------------------------------------
  c.n_layer_all = k.u32("block_count", 1, 4096);
  c.nextn_predict_layers = uint32_t(k.opt_uint("nextn_predict_layers", 0, 4096).value_or(0));
  c.n_layer = c.n_layer_all;
  bool in_file_mtp = false;
  if (c.nextn_predict_layers > 0) {
    if (c.nextn_predict_layers >= c.n_layer_all)
      k.bad("nextn_predict_layers", str(c.nextn_predict_layers), str("fewer than block_count = ", c.n_layer_all));
    const uint32_t first = c.n_layer_all - c.nextn_predict_layers;
    // llama.cpp's rule: the MTP blocks count only when their eh_proj is in the file.
    if (f.tensor(str("blk.", first, ".nextn.eh_proj.weight"))) {
      if (c.nextn_predict_layers != 1)
        k.bad("nextn_predict_layers", str(c.nextn_predict_layers), "1 (DS4 has one MTP block)");
      c.n_layer = first;
      in_file_mtp = true;
    }
  }
  if (in_file_mtp && mtp_file)
    fail(f.path(), ": carries an in-file MTP block (blk.", c.n_layer, ".nextn.*) and --mtp ", mtp_file->path(),
         " was given too, expected one MTP source");
  if (mtp_file) {
    if (!mtp_file->tensor("mtp.0.e_proj.weight"))
      fail("mtp.0.e_proj.weight: missing, expected an antirez-layout MTP file with mtp.0.* tensors (",
           mtp_file->path(), ")");
    c.mtp = MtpLayout::Separate;
  } else {
    c.mtp = in_file_mtp ? MtpLayout::InFile : MtpLayout::None;
  }

  // ---- sizes --------------------------------------------------------------------
  c.context_length = k.as_uint("context_length", k.need("context_length"), 1, uint64_t(1) << 40);
  c.n_embd = k.u32("embedding_length");
  if (const Value* v = k.find("vocab_size")) {
    c.n_vocab = uint32_t(k.as_uint("vocab_size", *v, 1, kMaxDim));
  } else if (const Value* t = f.find("tokenizer.ggml.tokens"); t && t->type == ValueType::ARRAY) {
    c.n_vocab = uint32_t(t->array_size());  // llama.cpp sizes the vocabulary from the token list
    if (c.n_vocab == 0 || c.n_vocab > kMaxDim) k.bad("vocab_size", "missing and tokenizer.ggml.tokens is empty or huge", "a vocabulary size");
  } else {
    k.need("vocab_size");
  }
  c.n_head = k.u32("attention.head_count");
  c.n_head_kv = k.u32("attention.head_count_kv");
  require(c.n_head_kv == 1, k, "attention.head_count_kv", str(c.n_head_kv), "1 (DS4 shares one K=V head)");
  c.head_dim = k.u32("attention.key_length");
  const uint32_t value_len = k.u32("attention.value_length");
  require(value_len == c.head_dim, k, "attention.value_length", str(value_len),
          str(c.head_dim, " (= key_length: DS4 uses the key as the value)"));
  c.rms_eps = k.positive("attention.layer_norm_rms_epsilon");
  c.q_lora_rank = k.u32("attention.q_lora_rank");
  c.o_lora_rank = k.u32("attention.output_lora_rank");
  c.o_groups = k.u32("attention.output_group_count");
  require(c.n_head % c.o_groups == 0, k, "attention.output_group_count", str(c.o_groups),
          str("a divisor of head_count = ", c.n_head));
  c.sliding_window = k.u32("attention.sliding_window");
  c.compress_rope_freq_base = k.positive("attention.compress_rope_freq_base");
  c.indexer_heads = k.u32("attention.indexer.head_count");
  c.indexer_head_dim = k.u32("attention.indexer.key_length");
  c.indexer_top_k = k.u32("attention.indexer.top_k");
  c.rope_dim = k.u32("rope.dimension_count");
  require(c.rope_dim % 2 == 0 && c.rope_dim <= c.head_dim && c.rope_dim <= c.indexer_head_dim, k,
          "rope.dimension_count", str(c.rope_dim),
          str("an even number <= key_length (", c.head_dim, ") and <= indexer.key_length (", c.indexer_head_dim, ")"));
  c.rope_freq_base = k.positive("rope.freq_base");
  if (const Value* t = k.find("rope.scaling.type")) {
    require(t->type == ValueType::STRING && t->s == "yarn", k, "rope.scaling.type", describe(*t), "\"yarn\"");
  }
  c.rope_scaling_factor = k.positive("rope.scaling.factor");
  c.rope_orig_ctx = k.u32("rope.scaling.original_context_length", 1, uint64_t(1) << 31);
  c.yarn_beta_fast = k.f32("rope.scaling.yarn_beta_fast");
  c.yarn_beta_slow = k.f32("rope.scaling.yarn_beta_slow");

  // ---- experts --------------------------------------------------------------------
  c.n_expert = k.u32("expert_count", 1, 65536);
  c.n_expert_used = k.u32("expert_used_count", 1, c.n_expert);
  c.n_expert_shared = k.u32("expert_shared_count", 1, 64);
  c.expert_ff = k.u32("expert_feed_forward_length");
  c.expert_weights_scale = k.positive("expert_weights_scale");
  c.expert_weights_norm = k.boolean("expert_weights_norm");
  if (auto g = k.opt_uint("expert_gating_func", 0, UINT32_MAX)) {
    require(*g == 4, k, "expert_gating_func", str(*g), "4 (sqrt(softplus), the DS4 router)");
    c.expert_gating_func = uint32_t(*g);
  }
  for (const char* grp : {"expert_group_count", "expert_group_used_count"})
    if (auto g = k.opt_uint(grp, 0, UINT32_MAX)) require(*g == 0, k, grp, str(*g), "0 (DS4 has no expert groups)");
  c.hash_layer_count = k.u32("hash_layer_count", 0, c.n_layer);

  // ---- per-layer arrays -----------------------------------------------------------
  const auto ratios = k.uint_array("attention.compress_ratios", 0, uint64_t(1) << 20);
  if (ratios.size() < c.n_layer)
    k.bad("attention.compress_ratios", describe(k.need("attention.compress_ratios")),
          str("at least ", c.n_layer, " entries (one per layer)"));
  c.compress_ratios.assign(ratios.begin(), ratios.begin() + c.n_layer);
  // A stored MTP entry (llama.cpp files write one) must describe a sliding-window layer.
  if (c.mtp == MtpLayout::InFile && ratios.size() > c.n_layer && ratios[c.n_layer] != 0)
    k.bad(str("attention.compress_ratios[", c.n_layer, "]"), str(ratios[c.n_layer]), "0 (the MTP block has no compressor)");

  const auto clamp_exp = k.float_array("swiglu_clamp_exp", c.n_layer);
  std::vector<float> clamp_sh = k.find("swiglu_clamp_shexp") ? k.float_array("swiglu_clamp_shexp", c.n_layer) : clamp_exp;
  c.swiglu_clamp_exp.assign(clamp_exp.begin(), clamp_exp.begin() + c.n_layer);
  c.swiglu_clamp_shexp.assign(clamp_sh.begin(), clamp_sh.begin() + c.n_layer);
  // The MTP block's clamp: its own entry when stored, else the last trunk layer's
  // (every known file stores one value for all layers).
  c.mtp_swiglu_clamp_exp = clamp_exp.size() > c.n_layer ? clamp_exp[c.n_layer] : clamp_exp[c.n_layer - 1];
  c.mtp_swiglu_clamp_shexp = clamp_sh.size() > c.n_layer ? clamp_sh[c.n_layer] : clamp_sh[c.n_layer - 1];

  // ---- hyper-connections ------------------------------------------------------------
  c.hc_count = k.u32("hyper_connection.count", 1, 64);
  c.hc_sinkhorn_iters = k.u32("hyper_connection.sinkhorn_iterations", 1, 1u << 16);
  c.hc_eps = k.positive("hyper_connection.epsilon");

  // ---- tokenizer ids (optional: DS4's are 0 and 1, ds4 finds them by string) --------
  for (auto [key, dst] : {std::pair{"tokenizer.ggml.bos_token_id", &c.bos_id}, std::pair{"tokenizer.ggml.eos_token_id", &c.eos_id}}) {
    const Value* v = f.find(key);
    if (!v) continue;
    const bool ok = (is_uint_type(v->type) && v->u < c.n_vocab) || (is_sint_type(v->type) && v->i >= 0 && uint64_t(v->i) < c.n_vocab);
    if (!ok) fail(key, ": ", describe(*v), ", expected a token id below vocab_size = ", c.n_vocab, " (", f.path(), ")");
    *dst = uint32_t(is_uint_type(v->type) ? v->u : uint64_t(v->i));
  }

  // ---- products the tensor table uses must stay representable --------------------
  const uint64_t q_dim = uint64_t(c.n_head) * c.head_dim;
  if (q_dim > kMaxDim) k.bad("attention.head_count", str(c.n_head, " x key_length ", c.head_dim), str("a product <= ", kMaxDim));
  if (uint64_t(c.hc_count) * c.n_embd > kMaxDim)
    k.bad("hyper_connection.count", str(c.hc_count, " x embedding_length ", c.n_embd), str("a product <= ", kMaxDim));
  if (uint64_t(c.indexer_heads) * c.indexer_head_dim > kMaxDim)
    k.bad("attention.indexer.head_count", str(c.indexer_heads, " x key_length ", c.indexer_head_dim), str("a product <= ", kMaxDim));
  if (uint64_t(c.o_groups) * c.o_lora_rank > kMaxDim)
    k.bad("attention.output_group_count", str(c.o_groups, " x output_lora_rank ", c.o_lora_rank), str("a product <= ", kMaxDim));
  if (uint64_t(c.expert_ff) * c.n_expert_shared > kMaxDim)
    k.bad("expert_shared_count", str(c.n_expert_shared, " x expert_feed_forward_length ", c.expert_ff), str("a product <= ", kMaxDim));
  return c;
}

std::vector<std::pair<std::string, gguf::Value>> model_config_metadata(const ModelConfig& c) {
  std::vector<std::pair<std::string, Value>> kv;
  auto u32 = [&](std::string key, uint32_t v) { kv.emplace_back("deepseek4." + key, Value::make_u32(v)); };
  auto f32 = [&](std::string key, float v) { kv.emplace_back("deepseek4." + key, Value::make_f32(v)); };
  const bool in_file = c.mtp == MtpLayout::InFile;
  const uint32_t n_all = c.n_layer + (in_file ? 1 : 0);

  // Per-layer arrays carry the MTP entry too when the MTP block is in the file, as
  // llama.cpp-converted files do.
  std::vector<int32_t> ratios(c.compress_ratios.begin(), c.compress_ratios.end());
  std::vector<float> clamp_exp = c.swiglu_clamp_exp, clamp_sh = c.swiglu_clamp_shexp;
  if (in_file) {
    ratios.push_back(0);
    clamp_exp.push_back(c.mtp_swiglu_clamp_exp);
    clamp_sh.push_back(c.mtp_swiglu_clamp_shexp);
  }

  u32("block_count", n_all);
  kv.emplace_back("deepseek4.context_length", Value::make_u32(uint32_t(c.context_length)));
  u32("embedding_length", c.n_embd);
  u32("vocab_size", c.n_vocab);
  u32("attention.head_count", c.n_head);
  u32("attention.head_count_kv", c.n_head_kv);
  u32("attention.key_length", c.head_dim);
  u32("attention.value_length", c.head_dim);
  f32("attention.layer_norm_rms_epsilon", c.rms_eps);
  u32("attention.q_lora_rank", c.q_lora_rank);
  u32("attention.output_lora_rank", c.o_lora_rank);
  u32("attention.output_group_count", c.o_groups);
  u32("attention.sliding_window", c.sliding_window);
  kv.emplace_back("deepseek4.attention.compress_ratios", Value::make_array_i32(ratios));
  f32("attention.compress_rope_freq_base", c.compress_rope_freq_base);
  u32("attention.indexer.head_count", c.indexer_heads);
  u32("attention.indexer.key_length", c.indexer_head_dim);
  u32("attention.indexer.top_k", c.indexer_top_k);
  u32("rope.dimension_count", c.rope_dim);
  f32("rope.freq_base", c.rope_freq_base);
  kv.emplace_back("deepseek4.rope.scaling.type", Value::make_string("yarn"));
  f32("rope.scaling.factor", c.rope_scaling_factor);
  u32("rope.scaling.original_context_length", c.rope_orig_ctx);
  f32("rope.scaling.yarn_beta_fast", c.yarn_beta_fast);
  f32("rope.scaling.yarn_beta_slow", c.yarn_beta_slow);
  u32("expert_count", c.n_expert);
  u32("expert_used_count", c.n_expert_used);
  u32("expert_shared_count", c.n_expert_shared);
  u32("expert_feed_forward_length", c.expert_ff);
  f32("expert_weights_scale", c.expert_weights_scale);
  kv.emplace_back("deepseek4.expert_weights_norm", Value::make_bool(c.expert_weights_norm));
  u32("expert_gating_func", c.expert_gating_func);
  kv.emplace_back("deepseek4.swiglu_clamp_exp", Value::make_array_f32(clamp_exp));
  kv.emplace_back("deepseek4.swiglu_clamp_shexp", Value::make_array_f32(clamp_sh));
  u32("hash_layer_count", c.hash_layer_count);
  u32("hyper_connection.count", c.hc_count);
  u32("hyper_connection.sinkhorn_iterations", c.hc_sinkhorn_iters);
  f32("hyper_connection.epsilon", c.hc_eps);
  u32("nextn_predict_layers", in_file ? 1 : 0);
  return kv;
}

}  // namespace fp
