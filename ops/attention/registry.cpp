// Registry entries of the attention family: q head norm + RoPE, kv RoPE + store, the
// attention with sinks over raw window + compressed rows, and the inverse RoPE on the
// output. CUDA-free metadata only.
//
// Attention shape: tokens, heads x head_dim, rows = KV rows visible to a token at the
// plan's cost context (raw window + compressed rows, top-k limited on CSA layers).
// K = V is one shared head (MQA), so a step reads each visible row once for all heads.
// - cuda.attention.decode (attention.cu): a block per (token, head) on CUDA cores, its
//   warps splitting the head's keys; 1..16 tokens.
// - cuda.attention.prefill (attention_tc.cu): a block per (token, 16 heads) stages the
//   token's key rows in shared memory once for its heads and runs S = QK and O = PK on
//   tensor cores in 3xTF32 (about F32's accuracy).
#include <algorithm>
#include <cmath>

#include "ops/attention/attention_tc_tiles.h"
#include "ops/registry/entries.h"

namespace fp {

namespace {

// Bytes of a stored KV element: the plan's kv_dtype (a shape without it: F32).
double kv_bytes(const KernelShape& s) { return s.kv_elem_bytes > 0 ? double(s.kv_elem_bytes) : 4.0; }

KernelInfo attention_decode() {
  KernelInfo k;
  k.id = "cuda.attention.decode";
  k.op = OpKind::attention;
  k.backend = Backend::Cuda;
  k.min_cc = 70;
  k.max_tokens = 16;
  k.summary = "attention with sinks on CUDA cores, a block per (token, head), its warps splitting the keys";
  k.cost = [](const KernelShape& s, const DeviceRates& r) {
    // Each (token, head) block reads the token's rows: L2 traffic, at ~3x the HBM rate.
    const double blocks = double(s.tokens) * std::max<int64_t>(1, s.heads);
    cost::Pass p;
    p.dev_bytes = s.weight_bytes + s.act_bytes + blocks * double(s.rows) * double(s.head_dim) * kv_bytes(s) / 3.0;
    p.flops = s.flops;
    p.rate = r.fp32;
    p.bw_eff = 0.6;
    p.flop_eff = 0.25;
    p.parallel = cost::parallel_fraction(blocks, r);
    KernelCost c{cost::us(p, r), 0, {}};
    c.launch = {{static_cast<uint32_t>(blocks), 1, 1}, {s.tokens <= 4 ? 512u : 128u, 1, 1}, 0};
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
  k.summary = "attention with sinks on tensor cores (3xTF32, F32 softmax), a block per (token, 16 heads)";
  k.cost = [](const KernelShape& s, const DeviceRates& r) {
    // A (token, 16 heads) block reads the token's rows once (L2 traffic, ~3x the HBM
    // rate); three TF32 products per multiply at about half the FP16 tensor rate.
    const double groups = std::ceil(double(std::max<int64_t>(1, s.heads)) / 16.0);
    const double blocks = double(s.tokens) * groups;
    cost::Pass p;
    p.dev_bytes = s.weight_bytes + s.act_bytes + blocks * double(s.rows) * double(s.head_dim) * kv_bytes(s) / 3.0;
    p.flops = 3.0 * s.flops;
    p.rate = r.fp16 / 2.0;
    p.bw_eff = 0.6;
    p.flop_eff = 0.3;
    p.parallel = cost::parallel_fraction(blocks, r);
    KernelCost c{cost::us(p, r), 0, {}};
    const auto smem = static_cast<uint32_t>(attention_tc::smem_bytes(int(s.head_dim), size_t(kv_bytes(s))));
    c.launch = {{static_cast<uint32_t>(s.tokens), static_cast<uint32_t>(groups), 1}, {128, 1, 1}, smem};
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
