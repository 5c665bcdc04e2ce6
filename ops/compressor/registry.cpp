// Registry entries of the compressor family: the KV compressor (state update + emitted
// row, attention d = head_dim or indexer d = indexer head_dim) and the lightning
// indexer's scores + top-k on CSA layers. CUDA-free metadata only.
//
// indexer_topk shape: tokens, heads x head_dim of the indexer, rows = compressed rows
// visible at the cost context (all of them are scored).
// - cuda.indexer_topk.decode: CUDA-core scores + block top-k; 1..16 tokens.
// - cuda.indexer_topk.prefill: tensor-core scores into a [tokens x rows] workspace, then
//   a per-token top-k.
#include <algorithm>
#include <cmath>

#include "ops/registry/entries.h"

namespace fp {

namespace {

KernelInfo topk_decode() {
  KernelInfo k;
  k.id = "cuda.indexer_topk.decode";
  k.op = OpKind::indexer_topk;
  k.backend = Backend::Cuda;
  k.min_cc = 70;
  k.max_tokens = 16;
  k.summary = "indexer scores on CUDA cores + radix top-k per token";
  k.cost = [](const KernelShape& s, const DeviceRates& r) {
    cost::Pass p;
    p.dev_bytes = s.weight_bytes + s.act_bytes;
    p.flops = s.flops;
    p.rate = r.fp32;
    p.flop_eff = 0.5;
    p.parallel = cost::parallel_fraction(std::ceil(s.rows / 32.0) * s.tokens, r);  // 32 rows per block
    const double scores = static_cast<double>(s.tokens) * s.rows * 4.0;
    return KernelCost{cost::us(p, r) + r.launch_us, static_cast<uint64_t>(scores), {}};
  };
  return k;
}

KernelInfo topk_prefill() {
  KernelInfo k;
  k.id = "cuda.indexer_topk.prefill";
  k.op = OpKind::indexer_topk;
  k.backend = Backend::Cuda;
  k.min_cc = 80;
  k.min_tokens = 2;
  k.summary = "indexer scores on tensor cores into a tokens x rows workspace, then per-token top-k";
  k.cost = [](const KernelShape& s, const DeviceRates& r) {
    const double scores = static_cast<double>(s.tokens) * s.rows * 4.0;
    cost::Pass gemm;
    gemm.dev_bytes = s.weight_bytes + s.act_bytes + scores;
    gemm.flops = s.flops;
    gemm.rate = r.bf16;
    gemm.flop_eff = 0.4;
    gemm.parallel = cost::parallel_fraction(std::ceil(s.rows / 128.0) * std::ceil(s.tokens / 64.0), r);
    cost::Pass select;
    select.dev_bytes = scores;
    select.parallel = cost::parallel_fraction(s.tokens, r);
    return KernelCost{cost::us(gemm, r) + cost::us(select, r), static_cast<uint64_t>(scores), {}};
  };
  return k;
}

}  // namespace

void register_compressor_kernels(std::vector<KernelInfo>& out) {
  out.push_back(entries::cpu_reference(OpKind::compressor, "reference compressor state update and pooling", false));
  out.push_back(entries::cpu_reference(OpKind::indexer_topk, "reference indexer scores and top-k", false));
  // Every CUDA kernel here waits for the previous one first (PDL, ops/core/pdl.cuh).
  out.push_back(entries::overlaps_prev(entries::cuda_simple(
      "cuda.compressor", OpKind::compressor, "state update per token, softmax pooling + norm + RoPE at window ends",
      false)));
  out.push_back(entries::overlaps_prev(topk_decode()));
  out.push_back(entries::overlaps_prev(topk_prefill()));
}

}  // namespace fp
