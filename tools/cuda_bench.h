// Timing helpers of the commands that time kernels on a GPU (bench-kernels, tune): a CUDA
// error check, a device buffer, and the graph-replay timer. CUDA host code: include from
// tools/*_cuda.cpp only.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "ops/core/error.h"

namespace fp::cli::cuda_bench {

inline void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("CUDA error in ", what, ": ", cudaGetErrorString(e));
}

struct Buf {
  void* p = nullptr;
  size_t bytes = 0;
  explicit Buf(size_t n) : bytes(n) { ck(cudaMalloc(&p, n ? n : 1), "bench buffer"); }
  ~Buf() { cudaFree(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
};

// Median of `reps` replays of a graph of `launches` calls of fn(i); microseconds per call.
// fn(0) runs once first, outside the capture (launchers' one-time set-up).
template <typename Fn>
double time_calls(cudaStream_t s, int launches, int reps, Fn fn) {
  fn(0);
  ck(cudaStreamSynchronize(s), "warm-up");
  cudaGraph_t g = nullptr;
  cudaGraphExec_t ge = nullptr;
  ck(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed), "capture");
  for (int i = 0; i < launches; ++i) fn(i);
  ck(cudaStreamEndCapture(s, &g), "capture");
  ck(cudaGraphInstantiate(&ge, g, 0), "instantiate");
  cudaEvent_t e0, e1;
  ck(cudaEventCreate(&e0), "event");
  ck(cudaEventCreate(&e1), "event");
  ck(cudaGraphLaunch(ge, s), "graph warm-up");
  std::vector<float> ms;
  for (int r = 0; r < reps; ++r) {
    ck(cudaEventRecord(e0, s), "event");
    ck(cudaGraphLaunch(ge, s), "graph");
    ck(cudaEventRecord(e1, s), "event");
    ck(cudaEventSynchronize(e1), "graph run");
    float t = 0;
    ck(cudaEventElapsedTime(&t, e0, e1), "event time");
    ms.push_back(t);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  std::sort(ms.begin(), ms.end());
  return double(ms[ms.size() / 2]) * 1e3 / launches;
}

}  // namespace fp::cli::cuda_bench
