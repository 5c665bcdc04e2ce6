// Compressor pooling and row emission (see compressor.h).
#include "ops/compressor/compressor.h"

#include <cmath>
#include <vector>

#include "ops/compressor/compressor_cuda.h"
#include "ops/core/error.h"
#include "ops/norm/norm.h"

namespace fp::ref {

void compressor_pool(const CompressorRing& ring, const CompressorShape& s, int64_t w, float* out) {
  const int64_t r = s.ratio, d = s.dim;
  // Slots: (position, channel offset). Ratio 4 overlaps: the previous window through the
  // first half of the width, the current window through the second half.
  struct Slot { int64_t pos, off; };
  std::vector<Slot> slots;
  slots.reserve(size_t(2 * r));
  if (s.overlap()) {
    if (w > 0)
      for (int64_t t = 0; t < r; ++t) slots.push_back({(w - 1) * r + t, 0});
    for (int64_t t = 0; t < r; ++t) slots.push_back({w * r + t, d});
  } else {
    for (int64_t t = 0; t < r; ++t) slots.push_back({w * r + t, 0});
  }
  for (int64_t j = 0; j < d; ++j) {
    double mx = -INFINITY;
    for (const Slot& sl : slots) mx = std::max(mx, double(ring.score_row(sl.pos)[sl.off + j]));
    if (mx == -INFINITY) { out[j] = 0.0f; continue; }
    double den = 0, num = 0;
    for (const Slot& sl : slots) {
      const double e = std::exp(double(ring.score_row(sl.pos)[sl.off + j]) - mx);
      den += e;
      num += e * double(ring.kv_row(sl.pos)[sl.off + j]);
    }
    out[j] = float(num / den);
  }
}

void compressor_emit(const CompressorRing& ring, const CompressorShape& s, int64_t w,
                     const float* norm_w, float eps, const Rope& rope, float* out) {
  compressor_pool(ring, s, w, out);
  rms_norm_row(out, norm_w, out, s.dim, eps);
  rope.apply(out, 1, s.dim, w * s.ratio);
}

}  // namespace fp::ref

// The CUDA ring's size is a pure function of the shape, defined here (CUDA-free) so that
// the planner sizes the executor's state the same way (planner/memory/cuda_buffers.h).
namespace fp::cuda {

int64_t compressor_ring_min(const ref::CompressorShape& s, int64_t n) { return (s.overlap() ? 2 : 1) * s.ratio + n; }

}  // namespace fp::cuda
