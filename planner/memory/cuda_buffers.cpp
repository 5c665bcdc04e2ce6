// The CUDA executor's buffer table (see cuda_buffers.h). Mirrors, buffer for buffer, what
// runtime/cuda/executor_cuda.cpp's setup allocates; the executor allocates from it.
#include "planner/memory/cuda_buffers.h"

#include <algorithm>

#include "ops/compressor/compressor.h"
#include "ops/compressor/compressor_cuda.h"
#include "ops/hc/hc.h"
#include "ops/indexer/indexer_cuda.h"
#include "ops/linear/linear_cuda.h"
#include "ops/moe/moe_cuda.h"
#include "ops/sample/sample.h"

namespace fp {

CudaBuffers cuda_buffers(const ModelConfig& c, const CudaBufferOptions& o) {
  CudaBuffers b;
  b.kv_bytes = o.kv_f16 ? 2 : 4;
  const int64_t S = std::max<int64_t>(1, o.max_step);
  const int64_t E = c.n_embd, D = c.head_dim, H = c.n_head, QL = c.q_lora_rank;
  const int64_t IH = c.indexer_heads, ID = c.indexer_head_dim, K = c.n_expert_used, V = c.n_vocab;
  const int64_t hc = c.hc_count, hd = hc * E, mix = (2 + hc) * hc;
  const int64_t low_dim = int64_t(c.o_groups) * c.o_lora_rank;
  b.ff_expert = c.expert_ff;
  b.ff_shared = int64_t(c.expert_ff) * std::max<int64_t>(1, c.n_expert_shared);
  // The widest input of any dense product (q_a/kv/compressors/router/shared experts read
  // n_embd, q_b and the indexer's q_b the q LoRA rank, out_b the grouped LoRA output,
  // down_sh the shared expert's width).
  b.max_cols = std::max({E, QL, low_dim, b.ff_shared});
  b.widest = std::max({K * std::max(E, b.ff_expert), H * D, E, QL, b.ff_shared, b.max_cols, int64_t(c.n_expert)});
  const int64_t cw = std::max<int64_t>(2 * D, 2 * ID);

  b.X = S * hd;
  b.x_in = S * E;
  b.post = S * hc;
  b.comb = S * hc * hc;
  b.hc_scratch = S * (hd + mix);
  b.h = S * E;
  b.qa = S * QL;
  b.q = S * H * D;
  b.kv = S * D;
  b.attn = S * H * D;
  b.low = S * low_dim;
  b.a = S * E;
  b.ckv = b.cgate = S * cw;
  b.iq = S * std::max<int64_t>(1, IH * ID);
  b.iw = S * std::max<int64_t>(1, IH);
  b.u = S * E;
  b.rlog = S * c.n_expert;
  b.wts = b.ids = S * K;
  b.moe = S * E;
  if (o.expert_split) {
    b.moe_slots = S * K * E;
    b.local_ids = S * K;
  }
  b.sg = b.su = b.smid = S * b.ff_shared;
  b.sh = b.f = b.z = S * E;
  b.logits = (o.logit_rows > 0 ? std::min(o.logit_rows, S) : S) * V;
  b.tokens = S;
  b.isel = S * std::max<int64_t>(1, c.indexer_top_k);
  b.nsel = S;
  b.group_table = S * c.o_groups;

  b.moe_work = cuda::moe_work_floats(S, K, E, b.ff_expert);
  if (o.moe_grouped || S >= cuda::kMoeGroupedMinTokens)
    b.moe_grouped_bytes = cuda::moe_grouped_work_bytes(S, K, E, b.ff_expert, c.n_expert);
  int64_t idx_rows = 0;
  for (uint32_t l = 0; l < c.n_layer; ++l)
    if (c.layer_kind(l) == LayerKind::CSA)
      idx_rows = std::max<int64_t>(idx_rows, (o.max_context + c.compress_ratio(l) - 1) / c.compress_ratio(l));
  b.index_rows = std::max<int64_t>(1, idx_rows);
  b.iscores = std::min(S, cuda::kIndexerTileTokens) * b.index_rows;
  b.qact_bytes = (S * b.widest + 255) / 256 * 292 + 4096;  // Q8_K blocks of the widest slot layout, + slack
  const cuda::LinearWorkspace lin_defaults;
  if (o.gemm || S >= lin_defaults.gemm_min_tokens)
    b.gemm_bytes = cuda::linear_gemm_bytes(b.max_cols, S, lin_defaults.gemm_tile_rows);
  b.rope_main = b.rope_comp = c.rope_dim / 2;
  // The sampler's arrays (4 x int32 and 2 x u64 per logit, 256-byte aligned) and CUB's
  // radix sort / scan storage: its own key and value buffers plus per-tile digit counts,
  // bounded here by 16 bytes per logit + 4 MiB (CUB's exact need is a CUDA call).
  auto up = [](int64_t x) { return (x + 255) / 256 * 256; };
  b.sample_bytes = 4 * up(4 * V) + 2 * up(8 * V) + up(16 * V + (4 << 20));

  auto comp = [&](int64_t ratio, int64_t dim) {
    CudaBuffers::Compressor k;
    const ref::CompressorShape shape{ratio, dim};
    k.ratio = ratio;
    k.dim = dim;
    k.width = shape.width();
    k.cap = cuda::compressor_ring_min(shape, S);
    k.max_rows = (o.max_context + ratio - 1) / ratio;
    return k;
  };
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    CudaBuffers::Layer L;
    L.raw_rows = int64_t(c.sliding_window) + S;
    L.raw_dim = D;
    const LayerKind kind = c.layer_kind(l);
    if (kind != LayerKind::SWA) L.attn = comp(c.compress_ratio(l), D);
    if (kind == LayerKind::CSA) L.index = comp(c.compress_ratio(l), ID);
    b.layers.push_back(L);
  }
  return b;
}

uint64_t CudaBuffers::activation_bytes() const {
  uint64_t f32 = 0;
  for (int64_t n : {X, X /*X2*/, x_in, post, comb, hc_scratch, h, qa, q, kv, attn, low, a, ckv, cgate, iq, iw, u, rlog,
                    wts, moe, sg, su, smid, sh, f, z, logits})
    f32 += buffer_bytes(n, 4);
  uint64_t i32 = 0;
  for (int64_t n : {ids, tokens, isel, nsel, group_table}) i32 += buffer_bytes(n, 4);
  if (moe_slots) f32 += buffer_bytes(moe_slots, 4);
  if (local_ids) i32 += buffer_bytes(local_ids, 4);
  return f32 + i32 + buffer_bytes(1, 8) /*position*/ + buffer_bytes(1, 4) /*error flags*/ +
         buffer_bytes(1, sizeof(SampleDeviceState)) + buffer_bytes(1, 4) /*sampled token*/;
}

uint64_t CudaBuffers::workspace_bytes() const {
  uint64_t s = buffer_bytes(moe_work, 4) + buffer_bytes(iscores, 8) + buffer_bytes(qact_bytes, 1);
  if (moe_grouped_bytes) s += buffer_bytes(moe_grouped_bytes, 1);
  if (gemm_bytes) s += buffer_bytes(gemm_bytes, 1);
  s += buffer_bytes(sample_bytes, 1);
  return s;
}

uint64_t CudaBuffers::table_bytes() const {
  uint64_t s = buffer_bytes(rope_main, 8) + buffer_bytes(rope_comp, 8);
  for (const Layer& L : layers)
    for (const Compressor* k : {&L.attn, &L.index})
      if (k->ratio) s += buffer_bytes(k->ratio * k->width, 4);  // ape rows, f32
  return s;
}

uint64_t CudaBuffers::state_bytes() const {
  uint64_t s = 0;
  for (const Layer& L : layers) {
    s += buffer_bytes(L.raw_rows * L.raw_dim, kv_bytes);
    for (const Compressor* k : {&L.attn, &L.index})  // rings f32; rows kv_bytes (attention) or f32 (indexer keys)
      if (k->ratio)
        s += 2 * buffer_bytes(k->cap * k->width, 4) + buffer_bytes(k->max_rows * k->dim, k == &L.attn ? kv_bytes : 4);
  }
  return s;
}

}  // namespace fp
