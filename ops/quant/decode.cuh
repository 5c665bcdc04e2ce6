// Exact device decoders of the ggml block formats (GGUF.md §11): decode32() turns one
// 32-element run of a block into f32 with the spec's formulas. Every product is exact in
// f32 (GGUF.md §13), so these give the same bits as fp::dequantize_row; the dequant
// kernels and the generic f32-activation matvec are built on them.
//
// The IQ tables live in per-translation-unit __device__ arrays (no relocatable device
// code): each .cu that includes this header uploads its own copy, once per device, from
// fp::iq's host tables, the single source of truth.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <mutex>
#include <vector>

#include "ops/quant/cuda_common.cuh"
#include "ops/quant/iq_tables.h"
#include "ops/quant/types.h"

namespace fp::cuda {
namespace {

__device__ uint64_t g_iq2xxs_grid[256];
__device__ uint64_t g_iq2xs_grid[512];
__device__ uint32_t g_iq3xxs_grid[256];
__device__ uint8_t g_ksigns[128];
// Sign masks: byte j is 0xff when sign bit j of ksigns[i] is set (the fast IQ2 matvec).
__device__ uint64_t g_sign_mask[128];

inline void upload_iq_tables() {
  static std::mutex mu;
  static std::vector<bool> done;
  const int dev = current_device();
  std::lock_guard<std::mutex> lock(mu);
  if (int(done.size()) <= dev) done.resize(dev + 1, false);
  if (done[dev]) return;
  uint64_t masks[128];
  for (int i = 0; i < 128; ++i) {
    masks[i] = 0;
    for (int j = 0; j < 8; ++j)
      if ((iq::kSignsIq2xs[i] >> j) & 1) masks[i] |= uint64_t(0xff) << (8 * j);
  }
  check(cudaMemcpyToSymbol(g_iq2xxs_grid, iq::kIq2xxsGrid, sizeof(g_iq2xxs_grid)), "upload iq2xxs grid");
  check(cudaMemcpyToSymbol(g_iq2xs_grid, iq::kIq2xsGrid, sizeof(g_iq2xs_grid)), "upload iq2xs grid");
  check(cudaMemcpyToSymbol(g_iq3xxs_grid, iq::kIq3xxsGrid, sizeof(g_iq3xxs_grid)), "upload iq3xxs grid");
  check(cudaMemcpyToSymbol(g_ksigns, iq::kSignsIq2xs, sizeof(g_ksigns)), "upload ksigns");
  check(cudaMemcpyToSymbol(g_sign_mask, masks, sizeof(masks)), "upload sign masks");
  done[dev] = true;
}

}  // namespace

namespace dev {

// Runs of 32 elements per block (1 for 32-element blocks, 8 for 256).
template <DType T> constexpr int kRuns = 8;
template <> constexpr int kRuns<DType::Q4_0> = 1;
template <> constexpr int kRuns<DType::Q8_0> = 1;

template <DType T> constexpr int kBlockBytes = 0;
template <> constexpr int kBlockBytes<DType::Q4_0> = 18;
template <> constexpr int kBlockBytes<DType::Q8_0> = 34;
template <> constexpr int kBlockBytes<DType::Q2_K> = 84;
template <> constexpr int kBlockBytes<DType::Q4_K> = 144;
template <> constexpr int kBlockBytes<DType::Q5_K> = 176;
template <> constexpr int kBlockBytes<DType::Q6_K> = 210;
template <> constexpr int kBlockBytes<DType::IQ2_XXS> = 66;
template <> constexpr int kBlockBytes<DType::IQ2_XS> = 74;
template <> constexpr int kBlockBytes<DType::IQ3_XXS> = 98;

__device__ __forceinline__ float fsign(uint32_t signs, int j) { return (signs >> j) & 1 ? -1.0f : 1.0f; }

// Q4_K / Q5_K packed 6-bit scale and min of sub-block j (ggml's get_scale_min_k4).
__device__ __forceinline__ void scale_min_k4(int j, const uint8_t* s, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 63;
    m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Run r (elements 32r .. 32r+31) of the block at b -> y[0..31].
template <DType T>
__device__ __forceinline__ void decode32(const uint8_t* b, int r, float* y) {
  if constexpr (T == DType::Q4_0) {
    const float d = h2f(ld_u16(b));
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const int q = b[2 + j];
      y[j] = float((q & 15) - 8) * d;
      y[j + 16] = float((q >> 4) - 8) * d;
    }
  } else if constexpr (T == DType::Q8_0) {
    const float d = h2f(ld_u16(b));
#pragma unroll
    for (int j = 0; j < 32; ++j) y[j] = float(int8_t(b[2 + j])) * d;
  } else if constexpr (T == DType::Q2_K) {
    const int half = r >> 2, g = r & 3;
    const float d = h2f(ld_u16(b + 80)), dmin = h2f(ld_u16(b + 82));
    const uint8_t* qs = b + 16 + 32 * half;
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int sc = b[2 * r + k];
      const float dl = d * float(sc & 15), ml = dmin * float(sc >> 4);
#pragma unroll
      for (int l = 0; l < 16; ++l) y[16 * k + l] = dl * float((qs[16 * k + l] >> (2 * g)) & 3) - ml;
    }
  } else if constexpr (T == DType::Q4_K || T == DType::Q5_K) {
    int sc, m;
    scale_min_k4(r, b + 4, sc, m);
    const float dl = h2f(ld_u16(b)) * float(sc), ml = h2f(ld_u16(b + 2)) * float(m);
    const uint8_t* qs = b + (T == DType::Q4_K ? 16 : 48) + 32 * (r >> 1);
    const int shift = (r & 1) * 4;
#pragma unroll
    for (int l = 0; l < 32; ++l) {
      int q = (qs[l] >> shift) & 15;
      if constexpr (T == DType::Q5_K) q += 16 * ((b[16 + l] >> r) & 1);
      y[l] = dl * float(q) - ml;
    }
  } else if constexpr (T == DType::Q6_K) {
    const int half = r >> 2, g = r & 3;
    const float d = h2f(ld_u16(b + 208));
    const uint8_t* ql = b + 64 * half + 32 * (g & 1);
    const uint8_t* qh = b + 128 + 32 * half;
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const float dl = d * float(int8_t(b[192 + 2 * r + k]));
#pragma unroll
      for (int l = 16 * k; l < 16 * k + 16; ++l) {
        const int lo = g < 2 ? (ql[l] & 15) : (ql[l] >> 4);
        const int hi = (qh[l] >> (2 * g)) & 3;
        y[l] = dl * float((lo | (hi << 4)) - 32);
      }
    }
  } else if constexpr (T == DType::IQ2_XXS) {
    const float d = h2f(ld_u16(b));
    const uint32_t a = ld_u32_a2(b + 2 + 8 * r), w = ld_u32_a2(b + 6 + 8 * r);
    const float db = d * (0.5f + float(w >> 28)) * 0.25f;
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const uint64_t G = g_iq2xxs_grid[(a >> (8 * l)) & 255];
      const uint32_t signs = g_ksigns[(w >> (7 * l)) & 127];
#pragma unroll
      for (int j = 0; j < 8; ++j) y[8 * l + j] = db * float((G >> (8 * j)) & 255) * fsign(signs, j);
    }
  } else if constexpr (T == DType::IQ2_XS) {
    const float d = h2f(ld_u16(b));
    const int S = b[66 + r];
    const float db0 = d * (0.5f + float(S & 15)) * 0.25f, db1 = d * (0.5f + float(S >> 4)) * 0.25f;
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const uint32_t v = ld_u16(b + 2 + 2 * (4 * r + l));
      const uint64_t G = g_iq2xs_grid[v & 511];
      const uint32_t signs = g_ksigns[v >> 9];
      const float db = l < 2 ? db0 : db1;
#pragma unroll
      for (int j = 0; j < 8; ++j) y[8 * l + j] = db * float((G >> (8 * j)) & 255) * fsign(signs, j);
    }
  } else if constexpr (T == DType::IQ3_XXS) {
    const float d = h2f(ld_u16(b));
    const uint32_t w = ld_u32_a2(b + 66 + 4 * r);
    const float db = d * (0.5f + float(w >> 28)) * 0.5f;
    const uint8_t* qs = b + 2 + 8 * r;
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const uint32_t signs = g_ksigns[(w >> (7 * l)) & 127];
      const uint32_t G1 = g_iq3xxs_grid[qs[2 * l]], G2 = g_iq3xxs_grid[qs[2 * l + 1]];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        y[8 * l + j] = db * float((G1 >> (8 * j)) & 255) * fsign(signs, j);
        y[8 * l + 4 + j] = db * float((G2 >> (8 * j)) & 255) * fsign(signs, 4 + j);
      }
    }
  }
}

}  // namespace dev
}  // namespace fp::cuda
