// CUDA kernels of the sampling family (see sample_cuda.h).
//
// argmax: one block per row, each thread keeps its best (key, id), then a shared-memory
// tree in a fixed order.
//
// sample_row follows the CPU reference (sample.cpp) step by step, so the only difference
// left is exp()'s last bit: (1) order keys and ids; (2) a stable descending radix sort
// (CUB) gives the candidates in (key desc, id asc) order; (3) the fixed-point weights
// of the first K; (4) their inclusive prefix sum C (integers: exact in any order); (5) one
// block cuts top-p by a binary search on C, min-p by the first weight under the floor,
// draws from the device RNG and finds the drawn candidate by a binary search on C.
// About 8 launches of a few microseconds each for 129280 entries; the sort dominates.
// (A threshold search that sorts only the survivors would be faster for small top-p
// sets; the full sort keeps one code path for every option, top_p = 1 included.)
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include <algorithm>

#include "ops/core/pdl.cuh"
#include "ops/core/select.cuh"
#include "ops/quant/cuda_common.cuh"
#include "ops/sample/sample_cuda.h"

namespace fp::cuda {
namespace {

constexpr int kThreads = 512;

// =============================================================================
// Kernels
// =============================================================================
// Each opens with the PDL wait (ops/core/pdl.cuh): logits, the sorted keys and the
// sampler state come from earlier kernels (ours or CUB's, which launch plain).

__global__ void argmax_kernel(const float* logits, int64_t V, int32_t* out) {
  __shared__ uint32_t bk[kThreads];
  __shared__ int32_t bi[kThreads];
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const float* row = logits + int64_t(blockIdx.x) * V;
  uint32_t key = 0;
  int32_t id = -1;
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
    const uint32_t k = dev::order_key(row[v]);
    if (id < 0 || k > key) {
      key = k;
      id = int32_t(v);
    }
  }
  bk[threadIdx.x] = key;
  bi[threadIdx.x] = id;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) {
      const uint32_t ok = bk[threadIdx.x + w];
      const int32_t oi = bi[threadIdx.x + w];
      const int32_t mi = bi[threadIdx.x];
      if (oi >= 0 && (mi < 0 || ok > bk[threadIdx.x] || (ok == bk[threadIdx.x] && oi < mi))) {
        bk[threadIdx.x] = ok;
        bi[threadIdx.x] = oi;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = bi[0];
}

constexpr int kElemThreads = 256;
constexpr int kPickThreads = 256;

__device__ __forceinline__ int64_t kept_by_top_k(const SampleParams& p, int64_t V) {
  return p.top_k > 0 && int64_t(p.top_k) < V ? int64_t(p.top_k) : V;
}

__global__ void keys_kernel(const float* logits, int64_t V, uint32_t* keys, int32_t* ids) {
  dev::wait_prev_grid();
  dev::allow_next_grid();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < V; i += int64_t(gridDim.x) * blockDim.x) {
    keys[i] = sample_order_key(logits[i]);
    ids[i] = int32_t(i);
  }
}

// w[j]: the weight of the j-th candidate in sorted order, 0 past top-k (and for every
// candidate when greedy or the row is only NaN: then the pick needs no weights).
__global__ void weights_kernel(const float* logits, const uint32_t* keys, const int32_t* ids, int64_t V, int shift,
                               const SampleDeviceState* st, uint64_t* w) {
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const SampleParams p = st->params;
  const int64_t K = kept_by_top_k(p, V);
  const bool none = !(p.temperature > 0.0f) || keys[0] == 0;
  const float top = logits[ids[0]];
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < V; j += int64_t(gridDim.x) * blockDim.x)
    w[j] = none || j >= K ? 0 : sample_weight(logits[ids[j]], top, double(p.temperature), shift);
}

// First j in [0, n) with C[j] >= x (or > x when `strict`); n when none.
__device__ int64_t first_reaching(const uint64_t* C, int64_t n, uint64_t x, bool strict) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (strict ? C[mid] > x : C[mid] >= x)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

// One block: the cuts, the draw, the token.
__global__ void pick_kernel(const uint32_t* keys, const int32_t* ids, const uint64_t* w, const uint64_t* C, int64_t V,
                            SampleDeviceState* st, int32_t* out) {
  __shared__ int64_t s_keep;
  __shared__ int64_t s_warp_min[kPickThreads / 32];
  dev::wait_prev_grid();
  dev::allow_next_grid();
  const SampleParams p = st->params;
  const bool greedy = !(p.temperature > 0.0f);
  if (greedy || keys[0] == 0) {  // the argmax; a row of only NaN still takes its draw
    if (threadIdx.x == 0) {
      if (!greedy) (void)rng_next(st->rng);
      *out = ids[0];
    }
    return;
  }
  const int64_t K = kept_by_top_k(p, V);
  if (threadIdx.x == 0) {
    int64_t keep = K;
    if (p.top_p < 1.0f) {
      const int64_t j = first_reaching(C, K, sample_scaled_ceil(p.top_p, C[K - 1]), false);
      if (j < K) keep = j + 1;
    }
    s_keep = keep;
  }
  __syncthreads();
  int64_t keep = s_keep;
  if (p.min_p > 0.0f) {
    // The first candidate after the top one under the floor: each thread's first in its
    // stride, then the smallest.
    const uint64_t floor_w = sample_scaled_ceil(p.min_p, w[0]);
    int64_t first = keep;
    for (int64_t j = 1 + threadIdx.x; j < keep; j += blockDim.x)
      if (w[j] < floor_w) {
        first = j;
        break;
      }
    for (int o = 16; o > 0; o >>= 1) {
      const long long other = __shfl_down_sync(0xffffffffu, (long long)first, o);
      if (other < first) first = other;
    }
    if ((threadIdx.x & 31) == 0) s_warp_min[threadIdx.x >> 5] = first;
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int i = 1; i < kPickThreads / 32; ++i)
        if (s_warp_min[i] < first) first = s_warp_min[i];
      if (first < keep) keep = first;
    }
  }
  if (threadIdx.x == 0) {
    const uint64_t total = C[keep - 1];
    const uint64_t t = sample_draw_threshold(rng_uniform(st->rng), total);
    int64_t j = first_reaching(C, keep, t, true);
    if (j == keep) j = keep - 1;
    *out = ids[j];
  }
}

// =============================================================================
// Workspace
// =============================================================================

struct Layout {
  size_t keys_in = 0, keys_out = 0, ids_in = 0, ids_out = 0, w = 0, c = 0, temp = 0, temp_bytes = 0, total = 0;
};

Layout layout(int64_t V) {
  if (V <= 0 || V > int64_t(INT32_MAX)) fail("cuda sample: vocabulary of ", V, " entries, expected 1..", INT32_MAX);
  auto up = [](size_t x) { return (x + 255) & ~size_t(255); };
  Layout L;
  size_t o = 0;
  auto take = [&](size_t& at, size_t bytes) {
    at = o;
    o += up(bytes);
  };
  take(L.keys_in, size_t(V) * 4);
  take(L.keys_out, size_t(V) * 4);
  take(L.ids_in, size_t(V) * 4);
  take(L.ids_out, size_t(V) * 4);
  take(L.w, size_t(V) * 8);
  take(L.c, size_t(V) * 8);
  size_t sort_b = 0, scan_b = 0;
  check(cub::DeviceRadixSort::SortPairsDescending(nullptr, sort_b, static_cast<const uint32_t*>(nullptr),
                                                  static_cast<uint32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                                  static_cast<int32_t*>(nullptr), int(V)),
        "cub sort size");
  check(cub::DeviceScan::InclusiveSum(nullptr, scan_b, static_cast<const uint64_t*>(nullptr),
                                      static_cast<uint64_t*>(nullptr), int(V)),
        "cub scan size");
  L.temp_bytes = std::max(sort_b, scan_b);
  take(L.temp, L.temp_bytes);
  L.total = o;
  return L;
}

}  // namespace

// =============================================================================
// Launchers
// =============================================================================

void argmax_rows(const float* logits, int64_t n, int64_t n_vocab, int32_t* out, Launch l) {
  if (!logits || !out || n <= 0 || n_vocab <= 0) fail("cuda argmax: bad arguments");
  launch_kernel(&argmax_kernel, unsigned(n), kThreads, 0, l, "argmax", logits, n_vocab, out);
}

size_t sample_workspace_bytes(int64_t n_vocab) { return layout(n_vocab).total; }

void sample_row(const float* logits, int64_t n_vocab, SampleDeviceState* state, void* workspace,
                size_t workspace_bytes, int32_t* out, Launch l) {
  const Stream s = l.stream;  // CUB's launches: plain (the kernels after them wait anyway)
  if (!logits || !state || !workspace || !out) fail("cuda sample: null pointer argument");
  const Layout L = layout(n_vocab);
  if (workspace_bytes < L.total)
    fail("cuda sample: workspace of ", workspace_bytes, " bytes, expected ", L.total, " for ", n_vocab, " entries");
  auto* base = static_cast<uint8_t*>(workspace);
  auto* keys_in = reinterpret_cast<uint32_t*>(base + L.keys_in);
  auto* keys_out = reinterpret_cast<uint32_t*>(base + L.keys_out);
  auto* ids_in = reinterpret_cast<int32_t*>(base + L.ids_in);
  auto* ids_out = reinterpret_cast<int32_t*>(base + L.ids_out);
  auto* w = reinterpret_cast<uint64_t*>(base + L.w);
  auto* C = reinterpret_cast<uint64_t*>(base + L.c);
  void* temp = base + L.temp;
  const int V = int(n_vocab);
  const unsigned blocks = unsigned(std::min<int64_t>((n_vocab + kElemThreads - 1) / kElemThreads, 1024));

  launch_kernel(&keys_kernel, blocks, kElemThreads, 0, l, "sample keys", logits, n_vocab, keys_in, ids_in);
  size_t tb = L.temp_bytes;
  check(cub::DeviceRadixSort::SortPairsDescending(temp, tb, keys_in, keys_out, ids_in, ids_out, V, 0, 32, s),
        "sample sort");
  launch_kernel(&weights_kernel, blocks, kElemThreads, 0, l, "sample weights", logits, keys_out, ids_out, n_vocab,
                sample_weight_shift(n_vocab), state, w);
  tb = L.temp_bytes;
  check(cub::DeviceScan::InclusiveSum(temp, tb, w, C, V, s), "sample prefix sum");
  launch_kernel(&pick_kernel, 1, kPickThreads, 0, l, "sample pick", keys_out, ids_out, w, C, n_vocab, state, out);
}

}  // namespace fp::cuda
