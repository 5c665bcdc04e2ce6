// Log-softmax and top-n for logprobs (see logprobs.h).
#include "tools/serve/logprobs.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace fp::serve {

TokenLogprob token_logprob(std::span<const float> logits, int32_t chosen, int32_t top_n) {
  // Computed in double: the sum over a 129k vocabulary should not lose the tail.
  double max = -INFINITY;
  for (float v : logits) max = std::max(max, double(v));
  double sum = 0;
  for (float v : logits) sum += std::exp(double(v) - max);
  const double log_z = max + std::log(sum);
  auto lp = [&](int32_t id) { return float(double(logits[size_t(id)]) - log_z); };

  TokenLogprob out;
  out.id = chosen;
  out.logprob = lp(chosen);
  const size_t n = std::min<size_t>(size_t(std::max(top_n, 0)), logits.size());
  if (n > 0) {
    std::vector<int32_t> ids(logits.size());
    std::iota(ids.begin(), ids.end(), 0);
    std::partial_sort(ids.begin(), ids.begin() + std::ptrdiff_t(n), ids.end(), [&](int32_t a, int32_t b) {
      return logits[size_t(a)] != logits[size_t(b)] ? logits[size_t(a)] > logits[size_t(b)] : a < b;
    });
    for (size_t i = 0; i < n; ++i) out.top.emplace_back(ids[i], lp(ids[i]));
  }
  return out;
}

}  // namespace fp::serve
