// Valid random weights on the device (`--weights random:SEED`, quant_cuda.h): every quant
// bit random, every scale field a finite f16 sized so that dequantised values stay within
// about +-scale (GGUF.md §11 gives each format's largest multiplier). Counter-based hashing
// makes the contents a pure function of (seed, byte offset): the same on any GPU, grid or
// chunking, so a benchmark can be rerun on identical weights.
#include <cmath>

#include "ops/quant/cuda_common.cuh"
#include "ops/quant/quant_cuda.h"

namespace fp::cuda {
namespace {

using namespace dev;

__device__ __forceinline__ uint64_t mix(uint64_t seed, uint64_t i) {
  uint64_t z = seed + (i + 1) * 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
__device__ __forceinline__ float unit(uint64_t h) { return float(h >> 40) * (1.0f / 16777216.0f); }  // [0, 1)

// Random bytes over the whole tensor, 4 at a time (2 for a trailing half-word); word0:
// the index of dst's first word in the whole tensor.
__global__ void fill_bytes(uint8_t* dst, int64_t nbytes, uint64_t seed, int64_t word0) {
  const int64_t words = nbytes / 4;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i <= words; i += int64_t(gridDim.x) * blockDim.x) {
    const uint32_t v = uint32_t(mix(seed, uint64_t(word0 + i)));
    if (i < words) {
      reinterpret_cast<uint16_t*>(dst + 4 * i)[0] = uint16_t(v);
      reinterpret_cast<uint16_t*>(dst + 4 * i)[1] = uint16_t(v >> 16);
    } else if (nbytes - 4 * i >= 2) {
      reinterpret_cast<uint16_t*>(dst + 4 * i)[0] = uint16_t(v);
    }
  }
}

struct Fields {
  int bytes;         // block bytes
  int off[2];        // byte offsets of f16 scale fields (-1: none)
  float mult[2];     // largest |dequantised value| per unit of each field
  float sign;        // sign of the scales (Q4_0's d is negative in ggml's quantiser)
};

// Rewrites each block's f16 scale fields with finite values in [0.5, 1) * scale / mult;
// block0: the index of dst's first block in the whole tensor.
__global__ void fix_scales(uint8_t* dst, int64_t nblk, Fields f, uint64_t seed, float scale, int64_t block0) {
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < nblk; b += int64_t(gridDim.x) * blockDim.x) {
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      if (f.off[k] < 0) continue;
      const uint64_t idx = uint64_t(2 * (block0 + b) + k);
      const float v = f.sign * scale / f.mult[k] * (0.5f + 0.5f * unit(mix(seed ^ 0x5ca1e5ull, idx)));
      reinterpret_cast<uint16_t*>(dst + b * f.bytes + f.off[k])[0] = __half_as_ushort(__float2half_rn(v));
    }
  }
}

template <DType T>
__global__ void fill_elems(uint8_t* dst, int64_t n, uint64_t seed, float scale, float center, int64_t int_range,
                           int64_t first) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint64_t h = mix(seed, uint64_t(first + i));
    const float v = center + scale * (2.0f * unit(h) - 1.0f);
    if constexpr (T == DType::F32) reinterpret_cast<float*>(dst)[i] = v;
    else if constexpr (T == DType::F16) reinterpret_cast<uint16_t*>(dst)[i] = __half_as_ushort(__float2half_rn(v));
    else if constexpr (T == DType::BF16) reinterpret_cast<uint16_t*>(dst)[i] = uint16_t(__float_as_uint(v) >> 16);
    else if constexpr (T == DType::I32)
      reinterpret_cast<int32_t*>(dst)[i] = int32_t(int_range > 0 ? int64_t(h % uint64_t(int_range)) : int64_t(h & 0x7fffffff));
  }
}

bool fields_of(DType t, Fields& f) {
  f = Fields{int(traits(t).bytes), {-1, -1}, {1.0f, 1.0f}, 1.0f};
  switch (t) {
    case DType::Q8_0: f.off[0] = 0, f.mult[0] = 127.0f; return true;
    case DType::Q4_0: f.off[0] = 0, f.mult[0] = 8.0f, f.sign = -1.0f; return true;
    case DType::Q2_K: f.off[0] = 80, f.off[1] = 82, f.mult[0] = 45.0f, f.mult[1] = 15.0f; return true;
    case DType::Q4_K: f.off[0] = 0, f.off[1] = 2, f.mult[0] = 63.0f * 15.0f, f.mult[1] = 63.0f; return true;
    case DType::Q5_K: f.off[0] = 0, f.off[1] = 2, f.mult[0] = 63.0f * 31.0f, f.mult[1] = 63.0f; return true;
    case DType::Q6_K: f.off[0] = 208, f.mult[0] = 128.0f * 32.0f; return true;
    case DType::IQ2_XXS: case DType::IQ2_XS: f.off[0] = 0, f.mult[0] = 15.5f * 0.25f * 43.0f; return true;
    case DType::IQ3_XXS: f.off[0] = 0, f.mult[0] = 15.5f * 0.5f * 62.0f; return true;
    default: return false;
  }
}

int grid_for(int64_t items) {
  const int64_t want = (items + 255) / 256, cap = int64_t(sm_count()) * 32;
  return int(want < cap ? (want > 0 ? want : 1) : cap);
}

}  // namespace

bool fill_supported(DType t) {
  Fields f;
  return fields_of(t, f) || t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::I32;
}

void fill_random(DType t, void* dst, int64_t n, const RandomFill& r, Stream s) {
  const char* what = "cuda fill_random";
  if (!fill_supported(t)) fail(what, ": type ", dtype_name(t), " is not supported");
  const int64_t block = traits(t).block;
  if (n < 0 || n % block != 0) fail(what, ": ", n, " elements of ", dtype_name(t), ", expected a multiple of ", block);
  if (r.first < 0 || r.first % block != 0)
    fail(what, ": first element ", r.first, " of ", dtype_name(t), ", expected a non-negative multiple of ", block);
  if (!std::isfinite(r.scale) || !std::isfinite(r.center) || r.scale < 0) fail(what, ": scale and center must be finite");
  if (n == 0) return;
  if (!aligned(dst, 4)) fail(what, ": destination must be 4-byte aligned");
  auto* d = static_cast<uint8_t*>(dst);
  Fields f;
  if (fields_of(t, f)) {
    const int64_t nblk = n / block, block0 = r.first / block;
    if (block0 * f.bytes % 4 != 0)
      fail(what, ": first element ", r.first, " starts at byte ", block0 * f.bytes, " of the tensor, expected a multiple of 4");
    fill_bytes<<<grid_for(nblk * f.bytes / 4 + 1), 256, 0, s>>>(d, nblk * f.bytes, r.seed, block0 * f.bytes / 4);
    check_launch(what);
    fix_scales<<<grid_for(nblk), 256, 0, s>>>(d, nblk, f, r.seed, r.scale, block0);
  } else {
    switch (t) {
      case DType::F32: fill_elems<DType::F32><<<grid_for(n), 256, 0, s>>>(d, n, r.seed, r.scale, r.center, r.int_range, r.first); break;
      case DType::F16: fill_elems<DType::F16><<<grid_for(n), 256, 0, s>>>(d, n, r.seed, r.scale, r.center, r.int_range, r.first); break;
      case DType::BF16: fill_elems<DType::BF16><<<grid_for(n), 256, 0, s>>>(d, n, r.seed, r.scale, r.center, r.int_range, r.first); break;
      default: fill_elems<DType::I32><<<grid_for(n), 256, 0, s>>>(d, n, r.seed, r.scale, r.center, r.int_range, r.first); break;
    }
  }
  check_launch(what);
}

}  // namespace fp::cuda
