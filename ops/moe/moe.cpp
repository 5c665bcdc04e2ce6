// Router and routed-expert CPU references (see moe.h). moe_experts groups tokens by
// expert so each expert's rows are dequantised once per call, then adds each token's
// expert outputs in slot order.
#include "ops/moe/moe.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "ops/core/error.h"
#include "ops/core/parallel.h"

namespace fp::ref {

void router_scores(float* logits, int64_t n, int64_t n_expert) {
  for (int64_t i = 0; i < n * n_expert; ++i) {
    const double z = logits[i];
    const double sp = z > 20 ? z : (z < -20 ? std::exp(z) : std::log1p(std::exp(z)));
    logits[i] = float(std::sqrt(sp));
  }
}

void route_topk(const float* scores, const float* bias, int64_t n, int64_t n_expert, int64_t k,
                int32_t* ids) {
  if (k > n_expert) fail("router: ", k, " experts per token, only ", n_expert, " experts");
  std::vector<int32_t> order(static_cast<size_t>(n_expert));
  std::vector<float> sel(static_cast<size_t>(n_expert));
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t e = 0; e < n_expert; ++e) sel[e] = scores[t * n_expert + e] + (bias ? bias[e] : 0.0f);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
      return sel[a] > sel[b] || (sel[a] == sel[b] && a < b);
    });
    std::copy(order.begin(), order.begin() + k, ids + t * k);
  }
}

void route_hash(const int32_t* tid2eid, int64_t n_vocab, const int32_t* tokens, int64_t n,
                int64_t n_expert, int64_t k, int32_t* ids) {
  for (int64_t t = 0; t < n; ++t) {
    if (tokens[t] < 0 || tokens[t] >= n_vocab) fail("hash router: token ", tokens[t], " outside [0, ", n_vocab, ")");
    for (int64_t i = 0; i < k; ++i) {
      const int32_t e = tid2eid[int64_t(tokens[t]) * k + i];
      if (e < 0 || e >= n_expert) fail("ffn_gate_tid2eid: token ", tokens[t], " maps to expert ", e, ", expected < ", n_expert);
      ids[t * k + i] = e;
    }
  }
}

void route_weights(const float* scores, const int32_t* ids, int64_t n, int64_t n_expert, int64_t k,
                   bool normalise, float scale, float* weights) {
  for (int64_t t = 0; t < n; ++t) {
    float sum = 0;
    for (int64_t i = 0; i < k; ++i) sum += scores[t * n_expert + ids[t * k + i]];
    const float div = normalise ? std::max(sum, kRouteWeightSumFloor) : 1.0f;
    for (int64_t i = 0; i < k; ++i) weights[t * k + i] = scores[t * n_expert + ids[t * k + i]] / div * scale;
  }
}

void swiglu(const float* gate, const float* up, int64_t n, float limit, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    float g = gate[i], u = up[i];
    if (limit > 0) {
      g = std::min(g, limit);
      u = std::clamp(u, -limit, limit);
    }
    out[i] = float(double(g) / (1.0 + std::exp(-double(g)))) * u;
  }
}

void moe_experts(const float* u, int64_t n, const int32_t* ids, const float* weights, int64_t k,
                 const Weight& gate, const Weight& up, const Weight& down, float limit, float* out) {
  const int64_t dim = gate.cols, ff = gate.rows;
  if (up.rows != ff || up.cols != dim || down.rows != dim || down.cols != ff)
    fail(down.name, ": expert shapes do not agree with ", gate.name);
  // Per (token, slot) expert outputs, then a per-token weighted sum in slot order.
  std::vector<float> ys(static_cast<size_t>(n * k * dim));
  std::vector<std::vector<int64_t>> by_expert(size_t(gate.experts));
  for (int64_t q = 0; q < n * k; ++q) {
    const int32_t e = ids[q];
    if (e < 0 || e >= gate.experts) fail(gate.name, ": expert id ", e, ", expected < ", gate.experts);
    by_expert[size_t(e)].push_back(q);
  }
  std::vector<float> xs, g, up_v, mid, y;
  for (int64_t e = 0; e < gate.experts; ++e) {
    const auto& qs = by_expert[size_t(e)];
    const int64_t m = int64_t(qs.size());
    if (m == 0) continue;
    xs.resize(size_t(m * dim));
    g.resize(size_t(m * ff));
    up_v.resize(size_t(m * ff));
    mid.resize(size_t(m * ff));
    y.resize(size_t(m * dim));
    for (int64_t i = 0; i < m; ++i) std::copy(u + qs[i] / k * dim, u + (qs[i] / k + 1) * dim, xs.begin() + i * dim);
    matmul(gate.expert(e), xs.data(), m, g.data());
    matmul(up.expert(e), xs.data(), m, up_v.data());
    swiglu(g.data(), up_v.data(), m * ff, limit, mid.data());
    matmul(down.expert(e), mid.data(), m, y.data());
    for (int64_t i = 0; i < m; ++i) std::copy(y.begin() + i * dim, y.begin() + (i + 1) * dim, ys.begin() + qs[i] * dim);
  }
  for (int64_t t = 0; t < n; ++t) {
    float* o = out + t * dim;
    for (int64_t d = 0; d < dim; ++d) o[d] = 0.0f;
    for (int64_t i = 0; i < k; ++i) {
      const float w = weights[t * k + i];
      const float* yi = ys.data() + (t * k + i) * dim;
      for (int64_t d = 0; d < dim; ++d) o[d] += w * yi[d];
    }
  }
}

}  // namespace fp::ref
