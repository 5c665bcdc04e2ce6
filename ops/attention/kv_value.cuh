// Stored KV rows and values as f32, for the attention family's kernels: rows are f32, or F16 bits
// (uint16_t) when a plan stores KV as F16 (attention_cuda.h). Device code only.
#pragma once
#include <cuda_fp16.h>

#include <cstdint>

namespace fp::cuda::dev {

__device__ __forceinline__ float kv_value(float v) { return v; }
__device__ __forceinline__ float kv_value(uint16_t v) { return __half2float(__ushort_as_half(v)); }

// The rows a kernel instantiated for stored type T reads: the f32 or the F16 pointer.
template <typename T>
__device__ __forceinline__ const T* kv_rows(const float* f32, const uint16_t* f16) {
  if constexpr (sizeof(T) == 4) {
    return f32;
  } else {
    return f16;
  }
}

}  // namespace fp::cuda::dev
