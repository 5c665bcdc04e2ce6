// Shared-memory tiles of the tensor-core prefill attention (attention_tc.cu), CUDA-free so
// that the kernel and its registry entry (registry.cpp: the launch record in the plan) size
// them with the same formula.
#pragma once
#include <cstddef>

namespace fp::attention_tc {

inline constexpr int kHeads = 16;  // heads per block: the mma's M
inline constexpr int kKeys = 32;   // keys per tile: 4 warps x the mma's N
inline constexpr int kLdP = kKeys + 4;  // row stride of the P tile (floats)

// Row strides (elements) of the Q tile (f32) and the K tile (the stored type: f32, or
// F16 bits): D + 4 floats, or D + 8 halves, put the 8 rows x 4 columns of a fragment load
// in different banks.
constexpr int ld_q(int D) { return D + 4; }
constexpr int ld_k(int D, size_t kv_elem_bytes) { return kv_elem_bytes == 4 ? D + 4 : D + 8; }

// Q [16][ld_q] and P [16][kLdP] in f32, K [32][ld_k] in the stored type.
constexpr size_t smem_bytes(int D, size_t kv_elem_bytes) {
  return size_t(kHeads * ld_q(D) + kHeads * kLdP) * sizeof(float) +
         size_t(kKeys * ld_k(D, kv_elem_bytes)) * kv_elem_bytes;
}

}  // namespace fp::attention_tc
