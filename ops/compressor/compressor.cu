// CUDA kernels of the compressor family (see compressor_cuda.h).
#include <cuda_runtime.h>

#include <cmath>

#include "ops/compressor/compressor_cuda.h"
#include "ops/core/block_reduce.cuh"
#include "ops/core/pdl.cuh"
#include "ops/numerics/numerics.cuh"
#include "ops/quant/cuda_common.cuh"
#include "ops/rope/rope.cuh"

namespace fp::cuda {
namespace {

// ---- kernels ------------------------------------------------------------------------

// width/overlap come from the host (CompressorShape's methods are host code). Both
// kernels open with the PDL wait (ops/core/pdl.cuh): kv, gate and the rings come from
// earlier kernels. (`overlap` here is the windows' overlap, not PDL.)
__global__ void store_kernel(CompressorArgs a, int64_t w) {
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const int64_t t = blockIdx.x, p = *a.pos0 + t;
  const float* ape = a.ape + (p % a.shape.ratio) * w;
  float* kv = a.ring_kv + (p % a.cap) * w;
  float* sc = a.ring_score + (p % a.cap) * w;
  for (int64_t j = threadIdx.x; j < w; j += blockDim.x) {
    kv[j] = a.kv[t * w + j];
    sc[j] = a.gate[t * w + j] + ape[j];
  }
}

__global__ void emit_kernel(CompressorArgs a, int64_t w, bool overlap) {
  extern __shared__ float row[];  // [dim]
  __shared__ double red[32];
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const int64_t t = blockIdx.x, p = *a.pos0 + t, r = a.shape.ratio, d = a.shape.dim;
  if ((p + 1) % r != 0) return;
  const int64_t win = (p + 1) / r - 1;
  if (win >= a.max_rows) {
    if (threadIdx.x == 0 && a.err) atomicOr(a.err, kErrContextFull);
    return;
  }
  // Slots in the CPU's order: previous window (first halves) then this window.
  const int64_t first = overlap && win > 0 ? (win - 1) * r : win * r;
  const int64_t n_slots = overlap && win > 0 ? 2 * r : r;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
    double mx = -INFINITY;
    for (int64_t s = 0; s < n_slots; ++s) {
      const int64_t pos = first + s, off = overlap && pos >= win * r ? d : 0;
      mx = fmax(mx, double(a.ring_score[(pos % a.cap) * w + off + j]));
    }
    if (mx == -INFINITY) {
      row[j] = 0.0f;
      continue;
    }
    double den = 0, num = 0;
    for (int64_t s = 0; s < n_slots; ++s) {
      const int64_t pos = first + s, off = overlap && pos >= win * r ? d : 0;
      const double e = exp(double(a.ring_score[(pos % a.cap) * w + off + j]) - mx);
      den += e;
      num += e * double(a.ring_kv[(pos % a.cap) * w + off + j]);
    }
    row[j] = float(num / den);
  }
  __syncthreads();
  double ss = 0;
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) ss += double(row[j]) * double(row[j]);
  ss = dev::block_reduce_sum(ss, red);
  const float scale = 1.0f / sqrtf(float(ss / double(d)) + a.eps);
  for (int64_t j = threadIdx.x; j < d; j += blockDim.x) row[j] = row[j] * scale * a.norm[j];
  __syncthreads();
  dev::rope_heads_block(row, 1, int(d), int(a.tab.n_rot), a.tab.inv_freq, win * r, false);
  __syncthreads();
  if (a.official) {
    if (a.index_keys) {
      dev::indexer_qat_row(row, int(d));
    } else {
      dev::fp8_kv_round_trip_row(row, int(d - a.tab.n_rot));
      __syncthreads();
      dev::f16_round_row(row, int(d));
      __syncthreads();
    }
  }
  if (a.rows16) {
    uint16_t* out = a.rows16 + win * d;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) out[j] = __half_as_ushort(__float2half_rn(row[j]));
  } else {
    float* out = a.rows + win * d;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) out[j] = row[j];
  }
}

}  // namespace

// ---- launchers ----------------------------------------------------------------------

void compressor(const CompressorArgs& a, Launch l) {
  const char* what = "cuda compressor";
  if (!a.kv || !a.gate || !a.ape || !a.ring_kv || !a.ring_score || !(a.rows || a.rows16) || !a.norm || !a.pos0 ||
      !a.tab.inv_freq)
    fail(what, ": null buffer");
  if (a.rows && a.rows16) fail(what, ": both F32 and F16 rows");
  if (a.rows16 && (!a.official || a.index_keys))
    fail(what, ": F16 rows need official numerics and attention rows (only those are F16-rounded)");
  if (a.shape.ratio <= 0 || a.shape.dim <= 0 || a.n <= 0) fail(what, ": ratio ", a.shape.ratio, ", dim ", a.shape.dim);
  if (a.cap < compressor_ring_min(a.shape, a.n))
    fail(what, ": ring of ", a.cap, " slots, a step of ", a.n, " tokens needs ", compressor_ring_min(a.shape, a.n));
  if (a.index_keys && (a.shape.dim & (a.shape.dim - 1))) fail(what, ": indexer dim ", a.shape.dim, ", expected a power of two");
  launch_kernel(&store_kernel, unsigned(a.n), 256, 0, l, "compressor store", a, a.shape.width());
  // A thread per pooled value where the row allows (each pools up to 2*ratio slots in
  // double): a decode step's emit is one block, so its width sets the latency.
  const int threads = a.shape.dim >= 512 ? 512 : (a.shape.dim >= 256 ? 256 : 128);
  launch_kernel(&emit_kernel, unsigned(a.n), threads, size_t(a.shape.dim) * sizeof(float), l, "compressor emit", a,
                a.shape.width(), a.shape.overlap());
}

}  // namespace fp::cuda
