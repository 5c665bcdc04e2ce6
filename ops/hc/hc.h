// Hyper-connections (MODEL.md §5.1-5.2, §5.12, §5.14; §11.5): the residual is `hc`
// streams of n_embd values, stored stream-major per token ([t][stream][dim]).
//   embed       X0 = [e, e, ..., e] from the token embedding row
//   hc_pre      flat RMS of all streams -> fn mix -> pre (σ+eps), post (2σ), comb
//               (row softmax + eps, column normalisation, then iters-1 row/column
//               rounds) -> x_in = Σ pre[i]·X[i]
//   hc_post     X'[k] = post[k]·a + Σ_i comb[i][k]·X[i]
//   hc_head     the output head's collapse: pre only (σ+eps), z = Σ pre[i]·X[i]
// Sinkhorn and the gates run in double on the few mix values; the collapse and post
// in f32 with a fixed stream order.
#pragma once
#include <cstdint>

#include "ops/linear/linear.h"

namespace fp::ref {

struct HcShape {
  int64_t hc = 4;          // streams
  int64_t dim = 0;         // n_embd
  float norm_eps = 1e-6f;  // flat RMSNorm
  float hc_eps = 1e-6f;
  int64_t sinkhorn_iters = 20;
  int64_t mix() const { return (2 + hc) * hc; }
};

// X [n][hc*dim]; emb rows looked up by the caller: X[t][i] = e[t] for every stream.
void hc_embed(const float* e, int64_t n, const HcShape& s, float* X);

// fn [mix][hc*dim], scale[3], base[mix]. Outputs x_in [n][dim], post [n][hc],
// comb [n][hc][hc] (comb[i][k]: from stream i to stream k). scratch: n*(hc*dim + mix).
void hc_pre(const float* X, int64_t n, const Weight& fn, const float* scale, const float* base,
            const HcShape& s, float* x_in, float* post, float* comb, float* scratch);

// Xout [n][hc*dim] (must not alias X) from the sub-layer output a [n][dim].
void hc_post(const float* a, const float* X, const float* post, const float* comb, int64_t n,
             const HcShape& s, float* Xout);

// fn [hc][hc*dim], scale[1], base[hc] -> z [n][dim]. scratch: n*(hc*dim + hc).
void hc_head(const float* X, int64_t n, const Weight& fn, const float* scale, const float* base,
             const HcShape& s, float* z, float* scratch);

}  // namespace fp::ref
