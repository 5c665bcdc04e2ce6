// Indexer scoring and top-k selection (see indexer.h).
#include "ops/indexer/indexer.h"

#include <algorithm>
#include <numeric>
#include <vector>

namespace fp::ref {

void indexer_scores(const float* q, const float* w, int64_t heads, int64_t dim,
                    const float* keys, int64_t n_rows, double* scores) {
  for (int64_t s = 0; s < n_rows; ++s) {
    const float* k = keys + s * dim;
    double total = 0;
    for (int64_t h = 0; h < heads; ++h) {
      const float* qh = q + h * dim;
      double dot = 0;
      for (int64_t i = 0; i < dim; ++i) dot += double(qh[i]) * double(k[i]);
      if (dot > 0) total += double(w[h]) * dot;
    }
    scores[s] = total;
  }
}

void topk_rows(const double* scores, int64_t n, int64_t k, int32_t* out) {
  std::vector<int32_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  });
  std::sort(idx.begin(), idx.begin() + k);
  std::copy(idx.begin(), idx.begin() + k, out);
}

}  // namespace fp::ref
