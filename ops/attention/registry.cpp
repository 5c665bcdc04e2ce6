// Registry entries of the attention family: q head norm + RoPE, kv RoPE + store, the
// attention with sinks over raw window + compressed rows, and the inverse RoPE on the
// output. CUDA-free metadata only.
//
// Attention shape: tokens, heads x head_dim, rows = KV rows visible to a token at the
// plan's cost context (raw window + compressed rows, top-k limited on CSA layers).
// K = V is one shared head (MQA), so a step reads each visible row once for all heads.
// - cuda.attention.decode: split-KV (flash-decoding) on CUDA cores; 1..16 tokens.
// - cuda.attention.prefill: tensor-core flash attention, 64-token query tiles.
#include <algorithm>
#include <cmath>

#include "ops/registry/entries.h"

namespace fp {

namespace {

KernelInfo attention_decode() {
  KernelInfo k;
  k.id = "cuda.attention.decode";
  k.op = OpKind::attention;
  k.backend = Backend::Cuda;
  k.min_cc = 70;
  k.max_tokens = 16;
  k.summary = "split-KV attention with sinks on CUDA cores; each row read once for all heads";
  k.cost = [](const KernelShape& s, const DeviceRates& r) {
    const double splits = std::max(1.0, std::ceil(s.rows / 256.0));
    cost::Pass p;
    p.dev_bytes = s.weight_bytes + s.act_bytes;
    p.flops = s.flops;
    p.rate = r.fp32;
    p.bw_eff = 0.6;
    p.flop_eff = 0.5;
    p.parallel = cost::parallel_fraction(splits * s.tokens * std::max<int64_t>(1, s.heads), r);  // a block per (split, token, head)
    KernelCost c{cost::us(p, r) + r.launch_us, static_cast<uint64_t>(splits * s.tokens * s.heads * (s.head_dim + 2) * 4.0),
                 {}};  // + the split combine launch
    c.launch = {{static_cast<uint32_t>(splits), static_cast<uint32_t>(std::max<int64_t>(1, s.heads / 8)), s.tokens},
                {256, 1, 1}, 0};
    return c;
  };
  return k;
}

KernelInfo attention_prefill() {
  KernelInfo k;
  k.id = "cuda.attention.prefill";
  k.op = OpKind::attention;
  k.backend = Backend::Cuda;
  k.min_cc = 80;
  k.min_tokens = 2;
  k.summary = "flash attention with sinks on tensor cores (BF16 operands, F32 softmax), 64-token query tiles";
  k.cost = [](const KernelShape& s, const DeviceRates& r) {
    const double q_tiles = std::ceil(s.tokens / 64.0);
    cost::Pass p;
    // Each query tile streams the visible rows once (rows of different tokens overlap).
    p.dev_bytes = s.weight_bytes + s.act_bytes * std::min(q_tiles, 4.0);
    p.flops = s.flops;
    p.rate = r.bf16;
    p.flop_eff = 0.35;
    p.parallel = cost::parallel_fraction(q_tiles * std::max<int64_t>(1, s.heads / 4), r);
    KernelCost c{cost::us(p, r), 0, {}};
    c.launch = {{static_cast<uint32_t>(q_tiles), static_cast<uint32_t>(std::max<int64_t>(1, s.heads / 4)), 1},
                {128, 1, 1}, 96 * 1024};
    return c;
  };
  return k;
}

}  // namespace

void register_attention_kernels(std::vector<KernelInfo>& out) {
  out.push_back(entries::cpu_reference(OpKind::q_head_norm_rope, "reference per-head RMS norm + tail RoPE", false));
  out.push_back(entries::cpu_reference(OpKind::kv_rope_store, "reference kv RoPE (+ FP8 round trip) and ring store", false));
  out.push_back(entries::cpu_reference(OpKind::attention, "reference attention with sinks, one head at a time", false));
  out.push_back(entries::cpu_reference(OpKind::out_inv_rope, "reference inverse tail RoPE", false));
  // Every CUDA kernel here waits for the previous one first (PDL, ops/core/pdl.cuh).
  out.push_back(entries::overlaps_prev(entries::cuda_simple(
      "cuda.q_head_norm_rope", OpKind::q_head_norm_rope, "one block per (token, head): unweighted RMS norm + tail RoPE",
      false)));
  out.push_back(entries::overlaps_prev(entries::cuda_simple(
      "cuda.kv_rope_store", OpKind::kv_rope_store, "kv tail RoPE, FP8 round trip when official, store into the ring",
      false)));
  out.push_back(entries::overlaps_prev(
      entries::cuda_simple("cuda.out_inv_rope", OpKind::out_inv_rope, "inverse tail RoPE per head", false)));
  out.push_back(entries::overlaps_prev(attention_decode()));
  out.push_back(entries::overlaps_prev(attention_prefill()));
}

}  // namespace fp
