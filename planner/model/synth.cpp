// synth: presets, dtype plans, the tensor list, and writing (weights in synth_fill.cpp,
// vocabulary in synth_vocab.cpp).
#include "planner/model/synth.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <set>

#include "ops/core/error.h"
#include "ops/quant/quantize.h"
#include "planner/gguf/gguf.h"

namespace fp {
namespace {

// Types synth can produce: whatever ops/quant can quantise from floats, plus the weight
// formats the real files use, whose blocks synth_fill builds directly.
bool synth_can_write(DType t) {
  return can_quantize(t) || t == DType::Q2_K || t == DType::Q4_K || t == DType::IQ2_XXS || t == DType::I32;
}

// Every role a DS4 tensor can have, for checking `--type ROLE=...`.
const std::set<std::string>& known_roles() {
  static const std::set<std::string> roles = [] {
    std::set<std::string> r;
    ModelConfig m = synth_preset("tiny").model;
    for (MtpLayout l : {MtpLayout::Separate, MtpLayout::InFile}) {
      m.mtp = l;
      for (const auto& s : expected_tensors(m)) {
        r.insert(s.role);
        r.insert("mtp." + s.role);
      }
    }
    return r;
  }();
  return roles;
}

void write_progress(uint64_t done, uint64_t total, double secs, bool final) {
  const double gb = 1e9, rate = secs > 0 ? double(done) / secs / gb : 0;
  const int width = 30, fill = total ? int(double(done) / double(total) * width) : width;
  std::string bar(size_t(fill), '#');
  bar.resize(width, ' ');
  std::fprintf(stderr, "\r[%s] %7.2f / %.2f GB  %5.2f GB/s  %5.1f s%s", bar.c_str(), double(done) / gb,
               double(total) / gb, rate, secs, final ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace

// ---- dtype plan ---------------------------------------------------------------------

DType DTypePlan::lookup(const TensorSpec& s, uint32_t n_layer) const {
  if (s.cls == TensorClass::Vector) return DType::F32;
  if (s.cls == TensorClass::Index) return DType::I32;
  if (s.layer == int32_t(n_layer))
    if (auto it = roles.find("mtp." + s.role); it != roles.end()) return it->second;
  if (auto it = roles.find(s.role); it != roles.end()) return it->second;
  return matrix;
}

void DTypePlan::apply(std::string_view assignment) {
  const size_t eq = assignment.find('=');
  if (eq == std::string_view::npos) fail("--type ", assignment, ": expected ROLE=TYPE (e.g. ffn_gate_exps=Q4_K or all=F32)");
  const std::string role(assignment.substr(0, eq));
  std::string name(assignment.substr(eq + 1));
  for (auto& ch : name) ch = char(std::toupper((unsigned char)ch));
  const auto t = dtype_from_name(name);
  if (!t) fail("--type ", assignment, ": unknown dtype ", name, ", expected a ggml type name such as F16, Q8_0, Q4_K");
  if (!synth_can_write(*t) || *t == DType::I32)
    fail("--type ", assignment, ": synth cannot write ", name,
         " weights, expected one of F32, F16, BF16, Q4_0, Q8_0, Q2_K, Q4_K, IQ2_XXS");
  if (role == "all") {
    roles.clear();
    matrix = *t;
    return;
  }
  if (!known_roles().count(role)) fail("--type ", assignment, ": unknown tensor role ", role, ", expected e.g. attn_q_b or mtp.ffn_up_exps");
  roles[role] = *t;
}

// ---- presets ------------------------------------------------------------------------

void set_layer_pattern(ModelConfig& m, uint32_t n_layer, uint32_t n_swa, uint32_t hca_ratio) {
  if (n_layer == 0) fail("synth: layers 0, expected at least 1");
  if (hca_ratio == 0 || hca_ratio == kCsaRatio)
    fail("synth: HCA ratio ", hca_ratio, ", expected a ratio > 0 other than ", kCsaRatio, " (which means CSA)");
  const float clamp_exp = m.swiglu_clamp_exp.empty() ? 10.0f : m.swiglu_clamp_exp[0];
  const float clamp_sh = m.swiglu_clamp_shexp.empty() ? clamp_exp : m.swiglu_clamp_shexp[0];
  m.n_layer = n_layer;
  m.compress_ratios.resize(n_layer);
  for (uint32_t l = 0; l < n_layer; ++l)
    m.compress_ratios[l] = l < n_swa ? 0 : ((l - n_swa) % 2 == 0 ? kCsaRatio : hca_ratio);
  m.swiglu_clamp_exp.assign(n_layer, clamp_exp);
  m.swiglu_clamp_shexp.assign(n_layer, clamp_sh);
  m.mtp_swiglu_clamp_exp = clamp_exp;
  m.mtp_swiglu_clamp_shexp = clamp_sh;
  m.hash_layer_count = std::min(m.hash_layer_count, n_layer);
}

SynthConfig synth_preset(std::string_view name) {
  SynthConfig s;
  s.preset = std::string(name);
  ModelConfig& m = s.model;
  m.n_head_kv = 1;
  m.rms_eps = 1e-6f;
  m.compress_rope_freq_base = 160000;
  m.rope_freq_base = 10000;
  m.rope_scaling_factor = 16;
  m.rope_orig_ctx = 65536;
  m.yarn_beta_fast = 32;
  m.yarn_beta_slow = 1;
  m.n_expert_shared = 1;
  m.expert_weights_scale = 1.5f;
  m.expert_weights_norm = true;
  m.hc_count = 4;
  m.hc_sinkhorn_iters = 20;
  m.hc_eps = 1e-6f;
  m.hash_layer_count = 3;
  if (name == "full") {
    // MODEL.md §1, and the antirez q2 dtype mix of TENSORS.tsv.
    m.n_embd = 4096;
    m.n_vocab = 129280;
    m.n_head = 64;
    m.head_dim = 512;
    m.q_lora_rank = 1024;
    m.o_lora_rank = 1024;
    m.o_groups = 8;
    m.sliding_window = 128;
    m.indexer_heads = 64;
    m.indexer_head_dim = 128;
    m.indexer_top_k = 512;
    m.rope_dim = 64;
    m.n_expert = 256;
    m.n_expert_used = 6;
    m.expert_ff = 2048;
    m.context_length = 1048576;
    m.swiglu_clamp_exp = {10.0f};
    m.mtp = MtpLayout::None;
    set_layer_pattern(m, 43, 2, 128);
    DTypePlan& d = s.dtypes;
    d.matrix = DType::F16;  // embeddings, HC, compressor, indexer, router
    for (const char* r : {"output", "attn_q_a", "attn_q_b", "attn_kv", "attn_output_a", "attn_output_b",
                          "ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp", "e_proj", "h_proj", "nextn.eh_proj"})
      d.roles[r] = DType::Q8_0;
    d.roles["ffn_gate_exps"] = d.roles["ffn_up_exps"] = DType::IQ2_XXS;
    d.roles["ffn_down_exps"] = DType::Q2_K;
    // The antirez MTP file: Q4_K experts, F32 HC and router (MODEL.md §3.4).
    for (const char* r : {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"}) d.roles[str("mtp.", r)] = DType::Q4_K;
    for (const char* r : {"hc_head_fn", "hc_attn_fn", "hc_ffn_fn", "ffn_gate_inp"}) d.roles[str("mtp.", r)] = DType::F32;
  } else if (name == "tiny") {
    // The HF oracle's tiny shape (oracle/hf/README.md): compression and index selection
    // happen within a few dozen tokens (window 8, HCA ratio 16, top-k 8), and a clamp of
    // 1.5 makes the SwiGLU clamp fire for O(1) activations.
    m.n_embd = 64;
    m.n_vocab = 512;
    m.n_head = 4;
    m.head_dim = 64;
    m.q_lora_rank = 32;
    m.o_lora_rank = 16;
    m.o_groups = 2;
    m.sliding_window = 8;
    m.indexer_heads = 16;
    m.indexer_head_dim = 32;
    m.indexer_top_k = 8;
    m.rope_dim = 16;
    m.n_expert = 8;
    m.n_expert_used = 3;
    m.expert_ff = 32;
    m.context_length = 4096;
    m.swiglu_clamp_exp = {1.5f};
    m.mtp = MtpLayout::InFile;
    set_layer_pattern(m, 6, 2, 16);
    // Only formats whose dequantised values are exact in f32 and simple to check:
    // F32, F16, Q8_0, in a mix so each path runs. Matrices used in matvecs (attention,
    // experts, head) are Q8_0, which every backend's quantised kernels read; the small
    // F16/F32 ones take the float paths.
    DTypePlan& d = s.dtypes;
    d.matrix = DType::F16;
    for (const char* r : {"output", "attn_q_a", "attn_q_b", "attn_kv", "attn_output_a", "attn_output_b",
                          "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps", "ffn_gate_shexp", "ffn_up_shexp",
                          "ffn_down_shexp", "e_proj", "h_proj", "nextn.eh_proj"})
      d.roles[r] = DType::Q8_0;
    for (const char* r : {"hc_attn_fn", "hc_ffn_fn", "ffn_gate_inp"}) d.roles[r] = DType::F32;
  } else {
    fail("synth: preset \"", name, "\", expected tiny or full");
  }
  return s;
}

// ---- tensor list ----------------------------------------------------------------------

std::vector<SynthTensor> synth_tensors(const SynthConfig& s, bool mtp_file) {
  std::vector<SynthTensor> out;
  for (const TensorSpec& spec : expected_tensors(s.model)) {
    if (spec.optional || spec.in_mtp_file != mtp_file) continue;
    SynthTensor t;
    t.spec = spec;
    t.type = s.dtypes.lookup(spec, s.model.n_layer);
    const TypeTraits& tr = traits(t.type);
    const int64_t n = spec.ne[0] * spec.ne[1] * spec.ne[2] * spec.ne[3];
    t.n_bytes = uint64_t(n / tr.block * tr.bytes);
    out.push_back(std::move(t));
  }
  return out;
}

void check_synth_config(const SynthConfig& s) {
  const ModelConfig& m = s.model;
  auto need = [](bool ok, auto&&... what) { if (!ok) fail("synth: ", what...); };
  need(m.n_layer > 0 && m.compress_ratios.size() == m.n_layer && m.swiglu_clamp_exp.size() == m.n_layer &&
           m.swiglu_clamp_shexp.size() == m.n_layer,
       "per-layer arrays do not match layers ", m.n_layer);
  for (uint32_t v : {m.n_embd, m.n_vocab, m.n_head, m.head_dim, m.q_lora_rank, m.o_lora_rank, m.o_groups,
                     m.sliding_window, m.indexer_heads, m.indexer_head_dim, m.indexer_top_k, m.rope_dim, m.n_expert,
                     m.n_expert_used, m.n_expert_shared, m.expert_ff, m.hc_count, m.hc_sinkhorn_iters})
    need(v > 0 && v <= (1u << 24), "every dimension must be in [1, 2^24], found ", v);
  need(m.n_head % m.o_groups == 0, "heads ", m.n_head, " must be a multiple of output groups ", m.o_groups);
  need(m.rope_dim % 2 == 0 && m.rope_dim <= m.head_dim && m.rope_dim <= m.indexer_head_dim, "rope dim ", m.rope_dim,
       ", expected an even number <= head dim ", m.head_dim, " and <= indexer head dim ", m.indexer_head_dim);
  need(m.n_expert_used <= m.n_expert, "experts used ", m.n_expert_used, " > experts ", m.n_expert);
  need(m.hash_layer_count <= m.n_layer, "hash layers ", m.hash_layer_count, " > layers ", m.n_layer);
  need(m.context_length > 0 && m.context_length <= 0xffffffffu, "context length ", m.context_length, " out of [1, 2^32)");
  need(m.n_vocab >= ds4_special_tokens().size() + 256, "vocab ", m.n_vocab, ", expected at least ",
       ds4_special_tokens().size() + 256);
  for (bool mtp : {false, true}) {
    for (const SynthTensor& t : synth_tensors(s, mtp)) {
      std::string why;
      if (!dtype_allowed(t.spec.cls, t.type, t.spec.ne[0], &why))
        fail(t.spec.name, ": dtype ", dtype_name(t.type), " for shape ", shape_str(t.spec.ne, t.spec.n_dims), ", expected ",
             why, " (choose another with --type ", t.spec.role, "=TYPE)");
      if (!synth_can_write(t.type)) fail(t.spec.name, ": synth cannot write dtype ", dtype_name(t.type));
    }
  }
}

// ---- writing --------------------------------------------------------------------------

namespace {

void add_metadata(gguf::Writer& w, const SynthConfig& s, bool mtp_file) {
  using gguf::Value;
  w.add("general.architecture", Value::make_string("deepseek4"));
  w.add("general.name", Value::make_string(str("flashplan-synth-", s.preset, "-seed", s.seed, mtp_file ? "-mtp" : "")));
  w.add("general.description",
        Value::make_string("random DeepSeek V4 Flash layout written by flashplan synth; not a trained model"));
  w.add("general.quantization_version", Value::make_u32(2));
  for (auto& [k, v] : model_config_metadata(s.model)) w.add(k, v);
  w.add("flashplan.synth.version", Value::make_u32(kSynthVersion));
  w.add("flashplan.synth.preset", Value::make_string(s.preset));
  w.add("flashplan.synth.seed", Value::make_u64(s.seed));
  if (mtp_file) return;
  const SynthVocab v = synth_vocab(s.model.n_vocab);
  w.add("tokenizer.ggml.model", Value::make_string("gpt2"));
  w.add("tokenizer.ggml.pre", Value::make_string("joyai-llm"));
  w.add("tokenizer.ggml.tokens", Value::make_array_string(v.tokens));
  w.add("tokenizer.ggml.token_type", Value::make_array_i32(v.types));
  w.add("tokenizer.ggml.merges", Value::make_array_string(v.merges));
  w.add("tokenizer.ggml.bos_token_id", Value::make_u32(v.bos));
  w.add("tokenizer.ggml.eos_token_id", Value::make_u32(v.eos));
  w.add("tokenizer.ggml.add_bos_token", Value::make_bool(true));
  w.add("tokenizer.ggml.add_eos_token", Value::make_bool(false));
}

}  // namespace

SynthResult write_synth(const SynthConfig& s, const SynthWriteOptions& o) {
  check_synth_config(s);
  SynthResult r;
  r.path = o.path;
  const bool separate = s.model.mtp == MtpLayout::Separate;
  if (separate) {
    r.mtp_path = o.mtp_path;
    if (r.mtp_path.empty()) {
      std::string stem = o.path;
      if (stem.size() > 5 && stem.substr(stem.size() - 5) == ".gguf") stem.resize(stem.size() - 5);
      r.mtp_path = stem + "-mtp.gguf";
    }
  }

  struct Job { std::string path; std::vector<SynthTensor> tensors; gguf::Writer w; };
  std::vector<Job> jobs;
  jobs.push_back({o.path, synth_tensors(s, false), {}});
  if (separate) jobs.push_back({r.mtp_path, synth_tensors(s, true), {}});
  uint64_t total = 0;
  for (size_t j = 0; j < jobs.size(); ++j) {
    add_metadata(jobs[j].w, s, j == 1);
    for (const auto& t : jobs[j].tensors)
      jobs[j].w.add_tensor(t.spec.name, t.type, std::vector<int64_t>(t.spec.ne.begin(), t.spec.ne.begin() + t.spec.n_dims));
    total += jobs[j].w.total_size(o.header_only);
  }

  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  const bool show = o.progress && !o.header_only;
  uint64_t done = 0;
  double last_print = -1;
  for (auto& job : jobs) {
    const uint64_t header = job.w.total_size(o.header_only) - [&] {
      uint64_t payload = 0;
      if (!o.header_only) for (const auto& t : job.w.tensors()) payload += t.n_bytes;
      return payload;
    }();
    done += header;
    auto fill = [&](size_t i, std::span<uint8_t> dst) {
      synth_fill(s, job.tensors[i], dst);
      done += dst.size();
      const double now = elapsed();
      if (show && now - last_print >= 0.25) {
        write_progress(done, total, now, false);
        last_print = now;
      }
    };
    gguf::WriteOptions wo;
    wo.header_only = o.header_only;
    job.w.write(job.path, fill, wo);
  }
  r.seconds = elapsed();
  r.bytes = total;
  if (show) write_progress(total, total, r.seconds, true);

  // Self-check: what synth writes, the reader and the validator must accept.
  gguf::OpenOptions oo;
  oo.allow_header_only = true;
  gguf::File main = gguf::File::open(o.path, oo);
  std::unique_ptr<gguf::File> mtp;
  if (separate) mtp = std::make_unique<gguf::File>(gguf::File::open(r.mtp_path, oo));
  const ModelConfig back = read_model_config(main, mtp.get());
  if (back.n_layer != s.model.n_layer || back.mtp != s.model.mtp || back.compress_ratios != s.model.compress_ratios)
    fail("internal: synth wrote ", o.path, " but it reads back as ", back.n_layer, " layers, MTP ", mtp_layout_name(back.mtp));
  const Validation v = check_model(main, back, mtp.get());
  if (!v.ok()) fail("internal: synth wrote ", o.path, " but validation refuses it: ", v.errors[0]);
  return r;
}

}  // namespace fp
