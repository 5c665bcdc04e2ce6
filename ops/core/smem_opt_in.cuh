// The opt-in a kernel needs before it launches with more than 48 KiB of dynamic shared
// memory (cudaFuncAttributeMaxDynamicSharedMemorySize), made once per kernel and device:
// each device's context holds its own copy of a kernel, and a multi-GPU plan launches the
// same kernel on several devices. Host code only; include from a .cu file.
#pragma once
#include <cuda_runtime.h>

#include <mutex>
#include <set>
#include <utility>

#include "ops/core/error.h"

namespace fp::cuda {

// fn: the kernel (cast to const void*); what names it in an error.
inline void opt_in_smem(const void* fn, size_t bytes, const char* what) {
  if (bytes <= 48 * 1024) return;
  static std::mutex mu;
  static std::set<std::pair<const void*, int>> done;
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  std::lock_guard<std::mutex> lock(mu);
  if (e == cudaSuccess && done.count({fn, dev})) return;
  if (e == cudaSuccess) e = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (e != cudaSuccess) fail("CUDA error in ", what, " (opting in to ", bytes, " bytes of shared memory): ", cudaGetErrorString(e));
  done.insert({fn, dev});
}

}  // namespace fp::cuda
