// CUDA kernels of the sampling family (see sample_cuda.h): one block per row, each
// thread keeps its best (key, id), then a shared-memory tree in a fixed order.
#include "ops/core/select.cuh"
#include "ops/quant/cuda_common.cuh"
#include "ops/sample/sample_cuda.h"

namespace fp::cuda {
namespace {

constexpr int kThreads = 512;

__global__ void argmax_kernel(const float* logits, int64_t V, int32_t* out) {
  __shared__ uint32_t bk[kThreads];
  __shared__ int32_t bi[kThreads];
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

}  // namespace

void argmax_rows(const float* logits, int64_t n, int64_t n_vocab, int32_t* out, Stream s) {
  if (!logits || !out || n <= 0 || n_vocab <= 0) fail("cuda argmax: bad arguments");
  argmax_kernel<<<unsigned(n), kThreads, 0, s>>>(logits, n_vocab, out);
  check_launch("argmax");
}

}  // namespace fp::cuda
