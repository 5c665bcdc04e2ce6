// Attention-with-sinks CPU reference (see attention.h).
#include "ops/attention/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops/linear/linear.h"

namespace fp::ref {

void attention_head(const float* q, const float* const* keys, int64_t n_keys, int64_t head_dim,
                    float sink, float scale, float* out, float* scratch) {
  float* s = scratch;
  double* acc = reinterpret_cast<double*>(scratch + ((n_keys + 1) & ~int64_t(1)));  // 8-byte aligned
  double mx = sink;
  for (int64_t i = 0; i < n_keys; ++i) {
    s[i] = dot_f32(q, keys[i], head_dim) * scale;
    mx = std::max(mx, double(s[i]));
  }
  double den = std::exp(double(sink) - mx);
  std::fill(acc, acc + head_dim, 0.0);
  for (int64_t i = 0; i < n_keys; ++i) {
    const double p = std::exp(double(s[i]) - mx);
    den += p;
    const float* k = keys[i];
    for (int64_t d = 0; d < head_dim; ++d) acc[d] += p * double(k[d]);
  }
  for (int64_t d = 0; d < head_dim; ++d) out[d] = float(acc[d] / den);
}

}  // namespace fp::ref
