// The lightning indexer of CSA layers (MODEL.md §5.9, §11.12; HF_MAPPING §4.5): scores
// every visible compressed row s for one query token as
//   score(s) = Σ_h w[h] · max(0, q_h · k_s)        (w already scaled by 1/sqrt(d·heads))
// and keeps the top_k rows (ties to the lower index, like ds4). When at most top_k rows
// are visible all are kept and nothing is scored. Sums run in double: the ranking is a
// discrete decision, so it should sit as close to the exact value as is cheap.
#pragma once
#include <cstdint>

namespace fp::ref {

// q [heads][dim], w [heads], keys [n_rows][dim] -> scores [n_rows] (double, so near-ties are not rounded into ties).
void indexer_scores(const float* q, const float* w, int64_t heads, int64_t dim,
                    const float* keys, int64_t n_rows, double* scores);

// The k best of scores[0..n) (k < n), written as ascending row indices into out[k].
void topk_rows(const double* scores, int64_t n, int64_t k, int32_t* out);

}  // namespace fp::ref
