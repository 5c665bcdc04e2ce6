// Copy and read ceilings (bandwidth.h). The read kernel sums 16-byte words with a grid
// of resident CTAs and writes one value per thread, so the compiler cannot drop the loads.
#include <algorithm>
#include <vector>

#include "ops/quant/cuda_common.cuh"
#include "runtime/cuda/bandwidth.h"

namespace fp::cuda {
namespace {

__global__ void read_all(const uint4* __restrict__ p, int64_t n, uint32_t* __restrict__ sink) {
  uint32_t acc = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint4 v = __ldcs(p + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  sink[blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

double median(std::vector<float> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

Bandwidth measure_bandwidth(int64_t bytes, int reps) {
  bytes = bytes / 16 * 16;
  void *a = nullptr, *b = nullptr, *sink = nullptr;
  cudaStream_t s = nullptr;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  Bandwidth out;
  const int sms = sm_count();
  const int blocks = sms * 8, threads = 256;
  try {
    check(cudaMalloc(&a, size_t(bytes)), "bandwidth buffer");
    check(cudaMalloc(&b, size_t(bytes)), "bandwidth buffer");
    check(cudaMalloc(&sink, size_t(blocks) * threads * 4), "bandwidth sink");
    check(cudaMemset(a, 0x3c, size_t(bytes)), "bandwidth fill");
    check(cudaStreamCreate(&s), "bandwidth stream");
    check(cudaEventCreate(&e0), "event");
    check(cudaEventCreate(&e1), "event");
    std::vector<float> copy_ms, read_ms;
    for (int r = 0; r < reps + 1; ++r) {  // the first of each is a warm-up
      float ms = 0;
      check(cudaEventRecord(e0, s), "event");
      check(cudaMemcpyAsync(b, a, size_t(bytes), cudaMemcpyDeviceToDevice, s), "copy");
      check(cudaEventRecord(e1, s), "event");
      check(cudaEventSynchronize(e1), "copy");
      check(cudaEventElapsedTime(&ms, e0, e1), "event time");
      if (r) copy_ms.push_back(ms);
      check(cudaEventRecord(e0, s), "event");
      read_all<<<blocks, threads, 0, s>>>(static_cast<const uint4*>(a), bytes / 16, static_cast<uint32_t*>(sink));
      check_launch("read_all");
      check(cudaEventRecord(e1, s), "event");
      check(cudaEventSynchronize(e1), "read");
      check(cudaEventElapsedTime(&ms, e0, e1), "event time");
      if (r) read_ms.push_back(ms);
    }
    out.copy_gbps = 2.0 * double(bytes) / (median(copy_ms) * 1e-3) / 1e9;
    out.read_gbps = double(bytes) / (median(read_ms) * 1e-3) / 1e9;
  } catch (...) {
    cudaFree(a), cudaFree(b), cudaFree(sink);
    if (s) cudaStreamDestroy(s);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    throw;
  }
  cudaFree(a), cudaFree(b), cudaFree(sink);
  cudaStreamDestroy(s);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return out;
}

}  // namespace fp::cuda
