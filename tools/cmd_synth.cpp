// `flashplan synth`: write a DS4-layout GGUF with random but valid weights.
//
//   flashplan synth --preset tiny|full [--header-only] [--seed N] [overrides] -o FILE.gguf
//
// Overrides change any hyperparameter of the preset; --layers / --swa-layers /
// --hca-ratio re-derive the per-layer compress ratios (SWA first, then CSA and HCA
// alternating, as Flash). --type ROLE=TYPE changes a tensor role's dtype.
#include <unistd.h>

#include <cstdio>
#include <optional>

#include "ops/core/error.h"
#include "planner/model/synth.h"
#include "tools/command.h"

namespace {

struct Args {
  std::string preset = "tiny", out, mtp, mtp_out;
  uint64_t seed = 1;
  bool header_only = false, no_progress = false;
  std::optional<uint32_t> layers, swa_layers, hca_ratio, hidden, vocab, heads, head_dim, q_lora, o_lora, o_groups,
      window, indexer_heads, indexer_dim, indexer_top_k, rope_dim, experts, experts_used, shared_experts, expert_ff,
      hash_layers, hc, sinkhorn_iters;
  std::optional<uint64_t> context;
  std::optional<float> swiglu_clamp, rope_base, compress_rope_base, yarn_factor, expert_scale;
  std::vector<uint32_t> ratios;
  std::vector<std::string> types;
};

template <typename T>
void set(const std::optional<T>& v, T& dst) {
  if (v) dst = *v;
}

int run(const Args& a) {
  fp::SynthConfig s = fp::synth_preset(a.preset);
  s.seed = a.seed;
  fp::ModelConfig& m = s.model;
  set(a.hidden, m.n_embd);
  set(a.vocab, m.n_vocab);
  set(a.heads, m.n_head);
  set(a.head_dim, m.head_dim);
  set(a.q_lora, m.q_lora_rank);
  set(a.o_lora, m.o_lora_rank);
  set(a.o_groups, m.o_groups);
  set(a.window, m.sliding_window);
  set(a.indexer_heads, m.indexer_heads);
  set(a.indexer_dim, m.indexer_head_dim);
  set(a.indexer_top_k, m.indexer_top_k);
  set(a.rope_dim, m.rope_dim);
  set(a.experts, m.n_expert);
  set(a.experts_used, m.n_expert_used);
  set(a.shared_experts, m.n_expert_shared);
  set(a.expert_ff, m.expert_ff);
  set(a.hc, m.hc_count);
  set(a.sinkhorn_iters, m.hc_sinkhorn_iters);
  set(a.context, m.context_length);
  set(a.rope_base, m.rope_freq_base);
  set(a.compress_rope_base, m.compress_rope_freq_base);
  set(a.yarn_factor, m.rope_scaling_factor);
  set(a.expert_scale, m.expert_weights_scale);
  if (a.swiglu_clamp) {
    m.swiglu_clamp_exp.assign(m.n_layer, *a.swiglu_clamp);
    m.swiglu_clamp_shexp.assign(m.n_layer, *a.swiglu_clamp);
  }
  if (a.hash_layers) m.hash_layer_count = *a.hash_layers;
  // The layer pattern: the preset's unless a count, the SWA prefix or the HCA ratio changes.
  uint32_t n_swa = 0, hca = 0;
  while (n_swa < m.compress_ratios.size() && m.compress_ratios[n_swa] == 0) ++n_swa;
  for (uint32_t r : m.compress_ratios)
    if (hca == 0 && r != 0 && r != fp::kCsaRatio) hca = r;
  if (a.layers || a.swa_layers || a.hca_ratio)
    fp::set_layer_pattern(m, a.layers.value_or(m.n_layer), a.swa_layers.value_or(n_swa), a.hca_ratio.value_or(hca ? hca : 128));
  if (a.hash_layers && *a.hash_layers > m.n_layer)
    fp::fail("--hash-layers ", *a.hash_layers, ": more than the ", m.n_layer, " layers");
  if (!a.ratios.empty()) {
    if (a.ratios.size() != m.n_layer) fp::fail("--ratios: ", a.ratios.size(), " entries, expected one per layer (", m.n_layer, ")");
    m.compress_ratios = a.ratios;
  }
  if (!a.mtp.empty()) {
    if (a.mtp == "none") m.mtp = fp::MtpLayout::None;
    else if (a.mtp == "separate") m.mtp = fp::MtpLayout::Separate;
    else if (a.mtp == "in-file") m.mtp = fp::MtpLayout::InFile;
    else fp::fail("--mtp ", a.mtp, ": expected none, separate or in-file");
  }
  for (const auto& t : a.types) s.dtypes.apply(t);

  fp::SynthWriteOptions o;
  o.path = a.out;
  o.mtp_path = a.mtp_out;
  o.header_only = a.header_only;
  o.progress = !a.no_progress && isatty(2);
  const fp::SynthResult r = fp::write_synth(s, o);
  std::printf("wrote %s (%.3f GB%s) in %.2f s", r.path.c_str(), double(r.bytes) / 1e9, a.header_only ? ", header only" : "",
              r.seconds);
  if (!a.header_only && r.seconds > 0) std::printf(", %.2f GB/s", double(r.bytes) / 1e9 / r.seconds);
  std::printf("\n");
  if (!r.mtp_path.empty()) std::printf("wrote MTP file %s\n", r.mtp_path.c_str());
  return 0;
}

}  // namespace

FP_COMMAND("synth", "Write a DS4-layout GGUF with random but valid weights (tiny or full size, or in between)",
           [](CLI::App& app) {
             auto a = std::make_shared<Args>();
             app.add_option("--preset", a->preset, "tiny (a few MB) or full (the real shapes, ~80.76 GiB)")
                 ->check(CLI::IsMember({"tiny", "full"}));
             app.add_option("-o,--output", a->out, "output GGUF")->required();
             app.add_option("--seed", a->seed, "weights seed (same seed, same bytes)");
             app.add_flag("--header-only", a->header_only, "write the header and tensor table only");
             app.add_flag("--no-progress", a->no_progress, "no progress bar on stderr");
             app.add_option("--mtp", a->mtp, "MTP layout: none, separate (antirez mtp.0.* file) or in-file (llama.cpp blk.N.*)")
                 ->check(CLI::IsMember({"none", "separate", "in-file"}));
             app.add_option("--mtp-out", a->mtp_out, "separate MTP file path (default: OUTPUT stem + -mtp.gguf)");
             app.add_option("--type", a->types, "ROLE=TYPE dtype of a tensor role (mtp.ROLE for the MTP block, all=TYPE for every matrix); repeatable");
             app.add_option("--layers", a->layers, "trunk layers");
             app.add_option("--swa-layers", a->swa_layers, "leading sliding-window-only layers");
             app.add_option("--hca-ratio", a->hca_ratio, "compress ratio of HCA layers");
             app.add_option("--ratios", a->ratios, "explicit compress ratio per layer (0 SWA, 4 CSA, other HCA)")->delimiter(',');
             app.add_option("--hidden", a->hidden, "embedding length");
             app.add_option("--vocab", a->vocab, "vocabulary size");
             app.add_option("--heads", a->heads, "attention heads");
             app.add_option("--head-dim", a->head_dim, "head dimension (key = value)");
             app.add_option("--q-lora", a->q_lora, "query LoRA rank");
             app.add_option("--o-lora", a->o_lora, "output LoRA rank per group");
             app.add_option("--o-groups", a->o_groups, "output groups");
             app.add_option("--window", a->window, "sliding window");
             app.add_option("--indexer-heads", a->indexer_heads, "indexer heads");
             app.add_option("--indexer-dim", a->indexer_dim, "indexer head dimension");
             app.add_option("--indexer-top-k", a->indexer_top_k, "indexer top-k");
             app.add_option("--rope-dim", a->rope_dim, "rotated dims per head");
             app.add_option("--experts", a->experts, "routed experts");
             app.add_option("--experts-used", a->experts_used, "experts per token");
             app.add_option("--shared-experts", a->shared_experts, "shared experts");
             app.add_option("--expert-ff", a->expert_ff, "expert FFN width");
             app.add_option("--hash-layers", a->hash_layers, "leading hash-routed layers");
             app.add_option("--hc", a->hc, "hyper-connection streams");
             app.add_option("--sinkhorn-iters", a->sinkhorn_iters, "Sinkhorn iterations");
             app.add_option("--context", a->context, "context_length written to the metadata");
             app.add_option("--swiglu-clamp", a->swiglu_clamp, "SwiGLU clamp (routed and shared experts)");
             app.add_option("--rope-base", a->rope_base, "RoPE base of SWA layers and MTP");
             app.add_option("--compress-rope-base", a->compress_rope_base, "RoPE base of compressed layers");
             app.add_option("--yarn-factor", a->yarn_factor, "YaRN scaling factor of compressed layers");
             app.add_option("--expert-scale", a->expert_scale, "routed expert weight scale");
             return [a] { return run(*a); };
           });
