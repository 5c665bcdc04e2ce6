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

struct ModelConfig {
  std::string arch = "deepseek4";
  uint32_t n_layer = 0;             // trunk layers (MTP block excluded)
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
  uint32_t hash_layer_count = 0;
  std::vector<float> swiglu_clamp_exp;    // per trunk layer
  std::vector<float> swiglu_clamp_shexp;  // per trunk layer (defaults to _exp)
  uint32_t hc_count = 0;
  uint32_t hc_sinkhorn_iters = 0;
  float hc_eps = 1e-6f;
  uint64_t context_length = 0;
  uint32_t bos_id = 0, eos_id = 1;
  MtpLayout mtp = MtpLayout::None;

  LayerKind layer_kind(uint32_t l) const;
  bool hash_routed(uint32_t l) const { return l < hash_layer_count; }
};

// Reads the config from a GGUF's metadata. Throws fp::Error naming the file, key,
// value found and what was expected. `mtp_file` (may be null) is a separate
// antirez-layout MTP GGUF given with --mtp.
ModelConfig read_model_config(const gguf::File& f, const gguf::File* mtp_file = nullptr);

}  // namespace fp
