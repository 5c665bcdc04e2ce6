// The opt-in a kernel needs before it launches with more than 48 KiB of shared memory,
// static and dynamic together (cudaFuncAttributeMaxDynamicSharedMemorySize), made once per
// kernel, device and size: each device's context holds its own copy of a kernel, a
// multi-GPU plan launches the same kernel on several devices, and one kernel may need more
// at a later launch (the indexer's scores kernel sizes its shared memory by heads x dims),
// so a larger request raises the opt-in. Host code only; include from a .cu file.
#pragma once
#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <utility>

#include "ops/core/error.h"

namespace fp::cuda {

// fn: the kernel (cast to const void*); what names it in an error.
inline void opt_in_smem(const void* fn, size_t bytes, const char* what) {
  static std::mutex mu;
  // (kernel, device) -> dynamic bytes known to launch (opted in, or within the default).
  static std::map<std::pair<const void*, int>, size_t> opted;
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  std::lock_guard<std::mutex> lock(mu);
  if (e == cudaSuccess) {
    auto it = opted.find({fn, dev});
    if (it != opted.end() && it->second >= bytes) return;
    // Static shared memory counts against the same 48 KiB default (a kernel with 48 KiB of
    // static tables needs the opt-in for any dynamic bytes). Asked once per size, not per launch.
    cudaFuncAttributes fa{};
    e = cudaFuncGetAttributes(&fa, fn);
    if (e == cudaSuccess && fa.sharedSizeBytes + bytes > 48 * 1024)
      e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  }
  if (e != cudaSuccess)
    fail("CUDA error in ", what, " (opting in to ", bytes, " bytes of shared memory): ", cudaGetErrorString(e));
  opted[{fn, dev}] = bytes;
}

}  // namespace fp::cuda
