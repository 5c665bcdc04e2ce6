// The MoE paths' workspace sizes (see moe_cuda.h): the grouped path's layout, the one
// function that both sizes its workspace (executor set-up, the registry's cost, the
// planner's memory budget) and carves it (moe_grouped.cu); and the matvec path's size.
#include <algorithm>

#include "ops/moe/moe_cuda.h"

namespace fp::cuda {

MoeGroupedLayout moe_grouped_layout(int64_t n, int64_t k, int64_t dim, int64_t ff, int64_t n_expert) {
  const int64_t q = n * k;
  MoeGroupedLayout l;
  l.max_tiles = q / kMoeGroupedTileSlots + std::min(n_expert, q) + 1;
  int64_t at = 0;
  auto take = [&](int64_t bytes) {
    const int64_t o = at;
    at += (bytes + 255) / 256 * 256;
    return o;
  };
  l.ntiles = take(4);
  l.tiles = take(l.max_tiles * 16);
  l.perm = take(q * 4);
  l.xh = take(n * dim * 2);
  l.mid = take(q * ff * 2);
  l.ys = take(q * dim * 4);
  l.bytes = at;
  return l;
}

int64_t moe_work_floats(int64_t n, int64_t k, int64_t dim, int64_t ff) {
  const int64_t q = n * k;
  return q * dim /*xs*/ + 3 * q * ff /*g, up, mid*/ + q * dim /*ys*/;
}

}  // namespace fp::cuda
