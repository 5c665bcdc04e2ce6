// Host entry of the indexer family's CUDA kernels (indexer.cu): indexer_topk for a step
// of n tokens of a CSA layer, after the caller's idx_q_b / idx_proj products:
//   1. prep    RoPE on each query head's tail, the QAT round trip in official numerics,
//              head weights × 1/sqrt(dim·heads)
//   2. scores  Σ_h w[h]·max(0, q_h·k_s) in double for the token's visible rows
//              (N = (pos+1)/ratio), skipped when N <= top_k
//   3. top-k   radix select over the double scores, one block per token: exactly top_k
//              distinct rows in [0, N), ascending, ties to the lower row, NaN below
//              every number; nsel = top_k, or -1 when N <= top_k (every row visible)
// The grid is sized for max_rows, so a captured graph serves every position.
// CUDA-free header.
#pragma once
#include <cstdint>

#include "ops/rope/rope_cuda.h"

namespace fp::cuda {

struct IndexerArgs {
  float* q = nullptr;            // [n][heads][dim]
  float* w = nullptr;            // [n][heads]
  int64_t n = 0, heads = 0, dim = 0;
  const float* keys = nullptr;   // [max_rows][dim] compressed indexer keys
  int64_t max_rows = 0, ratio = 0, topk = 0;
  RopeTab tab;
  const int64_t* pos0 = nullptr;
  int64_t t0 = 0;                // token t of this call sits at position *pos0 + t0 + t (a tile of a step)
  bool official = false;
  double* scores = nullptr;      // workspace [n][max_rows]
  int32_t* sel = nullptr;        // [n][topk]
  int32_t* nsel = nullptr;       // [n]
};
void indexer_topk(const IndexerArgs& a, Launch l);  // l: stream and PDL (ops/core/launch.h)
// Tokens per indexer_topk call in the executor: a step's tokens go in tiles of this many,
// so the f64 score workspace is kIndexerTileTokens x the context's compressed rows (134 MB
// at 256k positions), not a whole 2048-token step's (1.07 GB).
inline constexpr int64_t kIndexerTileTokens = 256;

// The selection step alone, for tests: row t picks k of scores[t*ld .. t*ld + count).
// Same output convention (count <= k: nsel = -1 and nothing written).
void topk_rows(const double* scores, int64_t ld, int64_t n, int64_t count, int64_t k, int32_t* sel, int32_t* nsel,
               Launch l);

}  // namespace fp::cuda
