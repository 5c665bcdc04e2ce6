// The CUDA executor's device buffers — activations, workspaces and the sequence state —
// sized here, without CUDA, so that the planner budgets exactly what
// runtime/cuda/executor allocates. The executor allocates every buffer from this table
// and refuses to start when it would allocate more than the table says (a plan compiled
// by another build), so a plan that "fits" cannot run out of memory at setup.
//
// Everything scales with the largest step (max_step tokens: the plan's largest prefill
// bucket) or the context (max_context): a 2048-token step of DS4 Flash holds ~1.1 GB of
// logits and ~1.4 GB of other activations; the indexer scores every compressed row of a
// 256k context for every token of the step.
#pragma once
#include <cstdint>
#include <vector>

#include "planner/model/config.h"

namespace fp {

struct CudaBufferOptions {
  int64_t max_step = 1;      // tokens per step (the plan's largest prefill bucket)
  int64_t max_context = 1;   // positions
  int64_t logit_rows = 0;    // rows of logits a step returns (0: max_step)
  bool moe_grouped = false;  // the grouped prefill MoE runs (its workspace)
  bool gemm = false;         // the dequantise + cuBLAS prefill GEMM runs (its workspace)
  bool expert_split = false;  // multi-GPU: per-slot expert outputs and local expert ids
  bool kv_f16 = false;        // the raw KV rings and the attention compressors' rows as F16 (plan kv_dtype)
};

// Element counts (bytes where the name says so) of every buffer the executor allocates.
struct CudaBuffers {
  // ---- activations, per step (f32 unless noted)
  int64_t X = 0, x_in = 0, post = 0, comb = 0, hc_scratch = 0, h = 0, qa = 0, q = 0, kv = 0, attn = 0, low = 0,
          a = 0, ckv = 0, cgate = 0, iq = 0, iw = 0, u = 0, rlog = 0, wts = 0, moe = 0, sg = 0, su = 0, smid = 0,
          sh = 0, f = 0, z = 0, logits = 0;
  int64_t ids = 0, tokens = 0, isel = 0, nsel = 0, group_table = 0;  // int32
  int64_t moe_slots = 0, local_ids = 0;  // multi-GPU only (f32, int32); 0: not allocated
  // ---- workspaces
  int64_t moe_work = 0;          // f32
  int64_t moe_grouped_bytes = 0;  // 0 when the grouped MoE does not run
  int64_t index_rows = 0;        // compressed rows the indexer scores at max_context (1 when none)
  int64_t iscores = 0;           // f64: index_rows per token of an indexer tile
  int64_t qact_bytes = 0;        // quantised activations of the widest product
  int64_t gemm_bytes = 0;        // 0 when the prefill GEMM does not run
  int64_t sample_bytes = 0;      // the device sampler (ops/sample): a bound; the executor checks CUB's need fits
  // ---- constant tables (f64 rope frequencies, f32 compressor ape rows)
  int64_t rope_main = 0, rope_comp = 0;
  // ---- sequence state, per trunk layer
  struct Compressor {
    int64_t ratio = 0, dim = 0, width = 0;  // width: 2*dim when windows overlap (ratio 4)
    int64_t cap = 0;                        // ring slots
    int64_t max_rows = 0;                   // compressed rows at max_context
  };
  struct Layer {
    int64_t raw_rows = 0, raw_dim = 0;  // raw KV ring (sliding window + a step) of head_dim rows
    Compressor attn, index;         // ratio 0 when the layer has none
  };
  std::vector<Layer> layers;
  int64_t kv_bytes = 4;  // bytes per value of the raw rings and attention rows (2: F16); the rest is f32
  // ---- widths the executor checks its weights against
  int64_t ff_shared = 0, ff_expert = 0, widest = 0, max_cols = 0;

  uint64_t activation_bytes() const;
  uint64_t workspace_bytes() const;
  uint64_t table_bytes() const;
  uint64_t state_bytes() const;  // KV rings, compressor rings and rows
  uint64_t total_bytes() const { return activation_bytes() + workspace_bytes() + table_bytes() + state_bytes(); }
};

CudaBuffers cuda_buffers(const ModelConfig& c, const CudaBufferOptions& o);

// Rows of logits a plan's steps return: the last row, or every row of an MTP verify step
// (the decided token and mtp_depth drafts). The planner budgets it; the engine asks the
// executor for exactly this many.
inline int64_t cuda_logit_rows(uint32_t mtp_depth) { return int64_t(mtp_depth) + 1; }

// Bytes an allocation of `count` elements of `elem` bytes takes in the table (an empty
// buffer still takes one element, as the executor allocates it).
inline uint64_t buffer_bytes(int64_t count, int64_t elem) { return uint64_t(count > 1 ? count : 1) * uint64_t(elem); }

}  // namespace fp
