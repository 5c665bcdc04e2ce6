// Routing and experts (MODEL.md §5.13, §11.8-9; HF_MAPPING §4.6).
//   router   logits = ffn_gate_inp·u (f32), scores = sqrt(softplus(logits));
//            hash layers take their experts from tid2eid[token], the others the top-k
//            of scores + bias (bias only chooses); weights = the chosen unbiased scores
//            / max(their sum, 2^-14) · scale (when weights are normalised).
//   swiglu   silu(min(gate, L)) · clamp(up, −L, L) — routed and shared experts alike.
//   moe      Σ_slot weight · down_e(swiglu(gate_e·u, up_e·u)) over the chosen experts,
//            summed in slot order; each token's result is independent of which other
//            tokens share the call.
#pragma once
#include <cstdint>

#include "ops/linear/linear.h"

namespace fp::ref {

inline constexpr float kRouteWeightSumFloor = 6.103515625e-5f;  // 2^-14

// scores[t][e] = sqrt(softplus(logits[t][e])) in place.
void router_scores(float* logits, int64_t n, int64_t n_expert);

// Top-k of scores + bias (ties to the lower expert id), in descending biased order.
void route_topk(const float* scores, const float* bias, int64_t n, int64_t n_expert, int64_t k,
                int32_t* ids);

// Hash routing: ids[t] = tid2eid[tokens[t]] (k entries per token id).
void route_hash(const int32_t* tid2eid, int64_t n_vocab, const int32_t* tokens, int64_t n,
                int64_t n_expert, int64_t k, int32_t* ids);

// weights[t][i] from the unbiased scores of ids[t][i].
void route_weights(const float* scores, const int32_t* ids, int64_t n, int64_t n_expert, int64_t k,
                   bool normalise, float scale, float* weights);

// out[i] = silu(min(gate[i], L)) · clamp(up[i], −L, L) for i < n (L <= 0: no clamp).
void swiglu(const float* gate, const float* up, int64_t n, float limit, float* out);

// Routed experts: gate/up [experts][ff][dim], down [experts][dim][ff]; u [n][dim],
// ids/weights [n][k] -> out [n][dim].
void moe_experts(const float* u, int64_t n, const int32_t* ids, const float* weights, int64_t k,
                 const Weight& gate, const Weight& up, const Weight& down, float limit, float* out);

}  // namespace fp::ref
