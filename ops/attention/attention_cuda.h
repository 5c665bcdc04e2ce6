// Host entry of the attention family's CUDA kernels (attention.cu):
//   kv_rope_store  RoPE on each kv row's tail at its position; in official numerics the
//                  FP8 round trip of the non-RoPE part and F16 rounding of the row (as
//                  the CPU does); the row goes to the raw ring slot pos mod raw_cap
//   attention      attention with sinks for n query tokens (decode: n = 1, prefill: a
//                  chunk) over each token's compressed rows (all visible rows, or the
//                  indexer's selection) then its raw window, one block per (token, head),
//                  online softmax in f32 per warp, warps merged with the sink
//                  (cuda.attention.decode)
//   attention_prefill_tc  the same function on tensor cores (cuda.attention.prefill,
//                  attention_tc.cu): a block per (token, 16 heads) shares each staged
//                  key row across the heads; 3xTF32 products, about F32's accuracy
// Positions and the number of visible compressed rows are read from device memory, so
// a captured decode graph serves every position. Launch: stream and PDL (ops/core/launch.h). Rows the indexer names outside
// [0, visible) are skipped, never read. CUDA-free header.
#pragma once
#include <cstdint>

#include "ops/rope/rope_cuda.h"

namespace fp::cuda {

// KV rows may be stored as F16 (a plan's kv_dtype F16, official numerics only: there
// every stored row is already F16-rounded, so the F16 copy holds the same values and
// attention reads the same keys): set raw16 / comp16 instead of raw / comp.

// kv [n][head_dim] rotated in place and stored.
struct KvStoreArgs {
  float* kv = nullptr;
  int64_t n = 0, head_dim = 0;
  float* raw = nullptr;       // ring [raw_cap][head_dim]
  uint16_t* raw16 = nullptr;  // or the ring as F16 bits (official numerics only)
  int64_t raw_cap = 0;
  RopeTab tab;
  const int64_t* pos0 = nullptr;
  bool official = false;
};
void kv_rope_store(const KvStoreArgs& a, Launch l);

struct AttentionArgs {
  const float* q = nullptr;  // [n][heads][head_dim]
  float* out = nullptr;      // [n][heads][head_dim]
  int64_t n = 0, heads = 0, head_dim = 0;
  const float* raw = nullptr;  // ring [raw_cap][head_dim]
  int64_t raw_cap = 0, window = 0;
  const float* comp = nullptr;  // compressed rows [max_rows][head_dim]; nullptr: none (SWA)
  // F16 storage instead (see above): raw16 for raw, and comp16 for comp.
  const uint16_t* raw16 = nullptr;
  const uint16_t* comp16 = nullptr;
  int64_t ratio = 0, max_rows = 0;
  const int32_t* sel = nullptr;   // CSA: [n][topk] rows chosen by the indexer
  const int32_t* nsel = nullptr;  // CSA: [n] count chosen, -1 = every visible row
  int64_t topk = 0;
  const float* sinks = nullptr;   // [heads]
  float scale = 1.0f;
  const int64_t* pos0 = nullptr;
};
bool attention_supported(int64_t head_dim);  // multiples of 32 up to 512
// The checks both attention launchers make (buffers set, sizes, rows all F32 (raw, comp)
// or all F16 (raw16, comp16), ratio and selection counts); `what` names the caller.
void check_attention_args(const AttentionArgs& a, const char* what);
void attention(const AttentionArgs& a, Launch l);
// Compute capability 8.0+; q, raw and comp 16-byte aligned.
void attention_prefill_tc(const AttentionArgs& a, Launch l);

}  // namespace fp::cuda
