// Host entry of the MoE family's CUDA kernels (moe.cu), the ops of moe.h on the device:
//   router   in place: logits -> sqrt(softplus) scores; experts from tid2eid[token]
//            (hash layers) or the top-k of scores + bias in descending order, ties to
//            the lower id, NaN below every number (so k distinct in-range ids whatever
//            the scores); weights from the unbiased scores, normalised and scaled.
//            Token ids outside the vocabulary read row 0 and set kErrTokenRange in *err;
//            tid2eid entries are clamped into [0, n_expert).
//   swiglu   silu(min(g, L))·clamp(u, −L, L), NaN kept as the CPU keeps it.
//   moe      per (token, slot): gate/up/down through the linear family's expert-indexed
//            products (every slot of every token in one launch each), swiglu, then the
//            weighted sum in slot order. Decode (and any step without a grouped
//            workspace) takes this path: cuda.moe.matvec.
//   moe_grouped  cuda.moe.grouped_dequant_mma, the prefill path (moe_grouped.cu): slots
//            grouped by expert on the device, per tile (expert, <= 64 slots, a block of
//            weight rows) the weights dequantised once to f16 in shared memory, tensor
//            cores with f32 accumulation, gate/up -> clamped SwiGLU -> down -> the same
//            slot-order weighted sum. Activations and the SwiGLU output are rounded to f16
//            (|mid| <= L·silu(L) by the clamps), weights too. Out-of-range ids read nothing
//            and make their token's output NaN. Nothing allocates; capturable.
//   multi-GPU (expert_split, runtime/cuda/MULTI_GPU.md): with MoeArgs::slots set, moe and
//            moe_grouped compute only the slots whose expert this device holds (its
//            expert tensors hold experts [expert_first, expert_first + gate.experts)) and
//            write every slot's unweighted down output to `slots`, zeros for the other
//            devices' slots, with no combine; after the all-reduce of `slots` over the
//            devices, moe_combine sums them in slot order, the same arithmetic as the
//            one-GPU combine, so the result is bit-identical.
// Every launcher takes a Launch (ops/core/launch.h): the stream, and whether the node's
// kernels go with programmatic dependent launch (each of them then waits for the kernel
// before it; the expert matvecs read the ids only after that wait). CUDA-free header.
#pragma once
#include <cstdint>
#include <string>

#include "ops/linear/linear_cuda.h"
#include "ops/moe/moe.h"

namespace fp::cuda {

struct RouterArgs {
  float* logits = nullptr;          // [n][n_expert], scores on return
  int64_t n = 0, n_expert = 0, k = 0;
  const float* bias = nullptr;      // top-k layers (nullable)
  const int32_t* tid2eid = nullptr; // hash layers: [n_vocab][k]
  int64_t n_vocab = 0;
  const int32_t* tokens = nullptr;  // [n] (hash layers)
  bool normalise = true;
  float scale = 1.0f;
  int32_t* ids = nullptr;           // [n][k]
  float* weights = nullptr;         // [n][k]
  uint32_t* err = nullptr;
};
void router(const RouterArgs& a, Launch l);

void swiglu(const float* gate, const float* up, int64_t n, float limit, float* out, Launch l);

struct MoeArgs {
  const float* u = nullptr;        // [n][dim]
  int64_t n = 0, k = 0;
  const int32_t* ids = nullptr;    // [n][k]
  const float* weights = nullptr;  // [n][k]
  ref::Weight gate, up, down;      // device: [experts][ff][dim], [experts][dim][ff]
  float limit = 0;
  float* out = nullptr;            // [n][dim]
  float* work = nullptr;           // moe_work_floats(n, k, dim, ff)
  // The grouped path: moe() takes it for n >= grouped_min_tokens when this workspace is
  // set (moe_grouped_work_bytes for at least n tokens), the weight types have a grouped
  // kernel and ws.exact is off; the matvec path otherwise.
  void* grouped_work = nullptr;
  int64_t grouped_work_bytes = 0;
  int64_t grouped_min_tokens = 0;  // 0: kMoeGroupedMinTokens
  // Multi-GPU (see above): per-slot outputs [n*k][dim] instead of `out`; `ids` stay the
  // router's (global), local_ids is an [n*k] int32 workspace for this device's ids.
  float* slots = nullptr;
  int64_t expert_first = 0;
  int32_t* local_ids = nullptr;
};
int64_t moe_work_floats(int64_t n, int64_t k, int64_t dim, int64_t ff);
void moe(const MoeArgs& a, const LinearWorkspace& ws, Launch l);
// out[t] = sum over slots i in order of weights[t][i] * slots[t*k + i] (multi-GPU, above).
void moe_combine(const float* slots, const float* weights, int64_t n, int64_t k, int64_t dim, float* out, Launch l);
// Multi-GPU helpers of moe / moe_grouped (moe.cu): a.local_ids = this device's ids made
// local, the others -1 (both paths read nothing for an out-of-range id: the products
// write NaN, the grouping skips it); and the other devices' slots of a.slots set to zero.
const int32_t* moe_local_ids(const MoeArgs& a, Launch l);
void moe_clear_foreign_slots(const MoeArgs& a, Launch l);

inline constexpr const char* kMoeGroupedDequantMma = "cuda.moe.grouped_dequant_mma";
// moe()'s default switch-over. The grouped path works for any n; it wins once its cost
// (~19 us per touched expert on an H200, NOTES.md) drops below the matvec's (~22 us per
// token: 6 expert reads): about 220 tokens with uniform routing. The planner decides by
// the registry's cost instead; this is only the host entry's default.
inline constexpr int64_t kMoeGroupedMinTokens = 256;
inline constexpr int64_t kMoeGroupedTileSlots = 64;  // slots per tile (one expert each)
// The grouped path's workspace, carved in one place (moe_grouped_layout.cpp, CUDA-free so
// the registry's cost function sizes it the same way): byte offsets of the tile count,
// the tile list (16 bytes a tile), the slot permutation, u as f16, the SwiGLU output as
// f16 (sorted order) and the per-slot outputs (f32, slot order).
struct MoeGroupedLayout {
  int64_t max_tiles = 0;  // sum over experts of ceil(c_e / 64) < q / 64 + min(E, q) + 1
  int64_t ntiles = 0, tiles = 0, perm = 0, xh = 0, mid = 0, ys = 0, bytes = 0;
};
MoeGroupedLayout moe_grouped_layout(int64_t n, int64_t k, int64_t dim, int64_t ff, int64_t n_expert);
// Bytes of the grouped path's workspace for n tokens (monotone in n: size it for the
// largest step). a.work is not used by this path.
inline int64_t moe_grouped_work_bytes(int64_t n, int64_t k, int64_t dim, int64_t ff, int64_t n_expert) {
  return moe_grouped_layout(n, k, dim, ff, n_expert).bytes;
}
// Why the grouped kernel cannot serve these experts ("" when it can).
std::string moe_grouped_unsupported(const ref::Weight& gate, const ref::Weight& up, const ref::Weight& down);
// Uploads this path's IQ tables to the current device; call it before capturing a graph.
void moe_grouped_init();
void moe_grouped(const MoeArgs& a, Launch l);

}  // namespace fp::cuda
