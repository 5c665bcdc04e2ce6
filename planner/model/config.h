// The DS4 model configuration, read from GGUF metadata (MODEL.md §2). Nothing about
// the model's size is hard-coded: the real 43-layer Flash and a 2-layer toy read the
// same way. Layer kinds follow the per-layer compress ratio: 0 = sliding window only,
// 4 = CSA (overlapping compressor + lightning indexer), any other r > 0 = HCA.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "planner/gguf/gguf.h"

namespace fp {

enum class LayerKind : uint8_t { SWA = 0, CSA = 1, HCA = 2 };
const char* layer_kind_name(LayerKind k);

// Where the MTP block's tensors come from (MODEL.md §3.4-3.5).
enum class MtpLayout : uint8_t {
  None = 0,     // no MTP tensors: MTP unavailable
  Separate = 1, // antirez: a second file with mtp.0.* (given with --mtp FILE)
  InFile = 2,   // llama.cpp: blk.{n_layer}.* + blk.{n_layer}.nextn.eh_proj in the same file
};
const char* mtp_layout_name(MtpLayout m);

// The compress ratio that makes a layer CSA; every reader tests it literally (HF_MAPPING §2).
inline constexpr uint32_t kCsaRatio = 4;

struct ModelConfig {
  std::string arch = "deepseek4";
  std::string name;                 // general.name when present (display only)
  uint32_t n_layer = 0;             // trunk layers (MTP block excluded)
  uint32_t n_layer_all = 0;         // block_count as stored (llama.cpp counts an in-file MTP block)
  uint32_t nextn_predict_layers = 0;
  uint32_t n_embd = 0;
  uint32_t n_vocab = 0;
  uint32_t n_head = 0;
  uint32_t n_head_kv = 0;           // 1 for DS4 (shared K=V)
  uint32_t head_dim = 0;            // key_length == value_length
  float rms_eps = 1e-6f;
  uint32_t q_lora_rank = 0;
  uint32_t o_lora_rank = 0;
  uint32_t o_groups = 0;
  uint32_t sliding_window = 0;
  std::vector<uint32_t> compress_ratios;  // per trunk layer (n_layer entries)
  float compress_rope_freq_base = 0;
  uint32_t indexer_heads = 0;
  uint32_t indexer_head_dim = 0;
  uint32_t indexer_top_k = 0;
  uint32_t rope_dim = 0;            // rotated tail dims per head
  float rope_freq_base = 0;
  float rope_scaling_factor = 1;    // YaRN, compressed layers only
  uint32_t rope_orig_ctx = 0;
  float yarn_beta_fast = 32, yarn_beta_slow = 1;
  uint32_t n_expert = 0;
  uint32_t n_expert_used = 0;
  uint32_t n_expert_shared = 0;
  uint32_t expert_ff = 0;
  float expert_weights_scale = 1;
  bool expert_weights_norm = true;
  uint32_t expert_gating_func = 4;  // llama.cpp enum: 4 = sqrt(softplus), the only one DS4 uses
  uint32_t hash_layer_count = 0;
  std::vector<float> swiglu_clamp_exp;    // per trunk layer
  std::vector<float> swiglu_clamp_shexp;  // per trunk layer (defaults to _exp)
  float mtp_swiglu_clamp_exp = 0;         // entry n_layer when stored, else entry n_layer-1
  float mtp_swiglu_clamp_shexp = 0;
  uint32_t hc_count = 0;
  uint32_t hc_sinkhorn_iters = 0;
  float hc_eps = 1e-6f;
  uint64_t context_length = 0;
  uint32_t bos_id = 0, eos_id = 1;
  MtpLayout mtp = MtpLayout::None;

  // Layer l in [0, n_layer) is a trunk layer; l == n_layer is the MTP block, which
  // behaves as a sliding-window-only, top-k-routed layer (MODEL.md §7).
  LayerKind layer_kind(uint32_t l) const;
  uint32_t compress_ratio(uint32_t l) const;
  bool hash_routed(uint32_t l) const { return l < hash_layer_count; }

  // Derived sizes used by the tensor table and the executors.
  uint32_t q_dim() const { return n_head * head_dim; }              // attn_q_b rows
  uint32_t hc_mix() const { return (2 + hc_count) * hc_count; }     // hc_*_fn rows
  uint32_t hc_dim() const { return hc_count * n_embd; }             // flattened HC state
  uint32_t o_group_in() const { return q_dim() / o_groups; }        // attn_output_a ne0
  uint32_t shexp_ff() const { return expert_ff * n_expert_shared; }  // shared expert width
  uint32_t indexer_q_dim() const { return indexer_heads * indexer_head_dim; }
  uint32_t mtp_layer() const { return n_layer; }
  uint32_t count(LayerKind k) const;
};

// Reads the config from a GGUF's metadata. Throws fp::Error naming the file, key,
// value found and what was expected. `mtp_file` (may be null) is a separate
// antirez-layout MTP GGUF given with --mtp.
ModelConfig read_model_config(const gguf::File& f, const gguf::File* mtp_file = nullptr);

// The metadata keys that read_model_config reads, in the order synth writes them
// (tokenizer keys excluded). Used by synth so writer and reader cannot drift apart.
std::vector<std::pair<std::string, gguf::Value>> model_config_metadata(const ModelConfig& c);

}  // namespace fp
