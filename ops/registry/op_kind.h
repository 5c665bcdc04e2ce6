// The op vocabulary shared by the planner's op graph, the kernel registry and the
// executors (HELPERS.md "The op vocabulary"). Names are stable ids: they appear in
// plans, in kernel ids and in `flashplan inspect`; values equal schemas/plan.fbs OpKind.
// It lives in ops/ because the kernel registry (ops/) needs it and ops/ may not include
// planner/; planner/graph/op_kind.h is the name the rest of the code includes.
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

namespace fp {

enum class OpKind : uint8_t {
  embed = 0,            // token embedding -> HC init (all streams equal)
  hc_pre = 1,           // HC pre: flat RMS, mix, Sinkhorn, collapse -> x_in, post, comb
  rms_norm = 2,         // weighted RMSNorm
  matmul = 3,           // y = W x over quantised / float weights
  q_head_norm_rope = 4, // per-head unweighted RMSNorm + RoPE on tail dims
  kv_rope_store = 5,    // RoPE on kv tail, optional FP8 round trip, store raw row
  compressor = 6,       // compressor state update + emit compressed row
  indexer_topk = 7,     // indexer scores over visible compressed rows + top-k (CSA)
  attention = 8,        // attention with sinks over raw window + compressed rows
  out_inv_rope = 9,     // inverse RoPE on attention output tails
  grouped_matmul = 10,  // attn_output_a per group
  hc_post = 11,         // X' = post*a + comb^T X
  router = 12,          // logits -> sqrt-softplus -> (hash | biased top-k) -> weights
  moe = 13,             // routed experts for the selected ids, weighted sum
  swiglu = 14,          // shared-expert activation with clamps
  add = 15,             // f = moe + shared
  output_hc_head = 16,  // final HC head collapse
  argmax = 17,          // greedy token on device
  sample = 18,          // sampled token on device
  mtp_embed_proj = 19,  // MTP: e_proj(enorm(emb)) + h_proj(hnorm(H_k)) per stream
  all_reduce = 20,      // multi-GPU: sum a buffer over the devices (each ends with the sum)
  all_gather = 21,      // multi-GPU: every device gets the concatenation of every device's slice
  moe_combine = 22,     // multi-GPU: weighted sum of the per-slot expert outputs, in slot order
};
inline constexpr int kOpKindCount = 23;

// Collectives move data between the GPUs of a multi-GPU plan. They exist only in plans for
// several devices, so they have CUDA (NCCL) entries and no CPU reference.
inline constexpr bool is_collective(OpKind k) { return k == OpKind::all_reduce || k == OpKind::all_gather; }
// Ops only multi-GPU plans hold: the collectives, and the combine that follows the
// all-reduce of the routed experts' per-slot outputs (one GPU's moe node combines itself).
inline constexpr bool is_multi_gpu_only(OpKind k) { return is_collective(k) || k == OpKind::moe_combine; }

const char* op_kind_name(OpKind k);
std::optional<OpKind> op_kind_from_name(std::string_view name);

}  // namespace fp
