// Device dequantisation of GGUF tensors to f32 or f16 (quant_cuda.h), exact per GGUF.md
// §13: the same bits as fp::dequantize_row. One thread per 32-element run of a block;
// the 16/32-bit float types go element by element. Used by the prefill GEMM baseline
// (dequantise to f16, then cuBLAS) and by `flashplan dequant` on the GPU.
#include "ops/quant/decode.cuh"
#include "ops/quant/quant_cuda.h"

namespace fp::cuda {

namespace detail {
void upload_matvec_tables();
}  // namespace detail

namespace {

using namespace dev;

// ---- kernels ----------------------------------------------------------------------

__device__ __forceinline__ void store32(float* dst, const float* y) {
#pragma unroll
  for (int i = 0; i < 8; ++i) reinterpret_cast<float4*>(dst)[i] = make_float4(y[4 * i], y[4 * i + 1], y[4 * i + 2], y[4 * i + 3]);
}

__device__ __forceinline__ void store32(__half* dst, const float* y) {
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    uint4 v;
    uint32_t* u = reinterpret_cast<uint32_t*>(&v);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const __half2 h = __floats2half2_rn(y[8 * i + 2 * k], y[8 * i + 2 * k + 1]);
      u[k] = *reinterpret_cast<const uint32_t*>(&h);
    }
    reinterpret_cast<uint4*>(dst)[i] = v;
  }
}

template <DType T, typename Out>
__global__ void dequant_blocks(const uint8_t* __restrict__ src, int64_t n_runs, Out* __restrict__ dst) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n_runs; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t blk = i / kRuns<T>;
    const int r = int(i % kRuns<T>);
    float y[32];
    decode32<T>(src + blk * kBlockBytes<T>, r, y);
    store32(dst + 32 * i, y);
  }
}

__device__ __forceinline__ void put(float* d, float v) { *d = v; }
__device__ __forceinline__ void put(__half* d, float v) { *d = __float2half_rn(v); }

template <DType T, typename Out>
__global__ void dequant_elems(const uint8_t* __restrict__ src, int64_t n, Out* __restrict__ dst) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    float v;
    if constexpr (T == DType::F32) v = reinterpret_cast<const float*>(src)[i];
    else if constexpr (T == DType::F16) v = h2f(ld_u16(src + 2 * i));
    else v = bf2f(ld_u16(src + 2 * i));
    put(dst + i, v);
  }
}

// ---- launchers --------------------------------------------------------------------

int grid_for(int64_t items, int threads) {
  const int64_t want = (items + threads - 1) / threads;
  const int64_t cap = int64_t(sm_count()) * 32;
  return int(want < cap ? (want > 0 ? want : 1) : cap);
}

template <typename Out>
void dequant_any(DType t, const void* src, int64_t n, Out* dst, Stream s) {
  if (!dequant_supported(t)) fail("cuda dequantize: type ", dtype_name(t), " is not supported");
  const int64_t block = traits(t).block;
  if (n < 0 || n % block != 0) fail("cuda dequantize: ", n, " elements of ", dtype_name(t), ", expected a multiple of ", block);
  if (n == 0) return;
  if (!aligned(src, 4) || !aligned(dst, 16)) fail("cuda dequantize: source must be 4-aligned and destination 16-aligned");
  upload_iq_tables();
  const auto* b = static_cast<const uint8_t*>(src);
  constexpr int kThreads = 256;
  const int64_t runs = n / 32;
  switch (t) {
#define FP_RUNS(T) case DType::T: dequant_blocks<DType::T><<<grid_for(runs, kThreads), kThreads, 0, s>>>(b, runs, dst); break;
    FP_RUNS(Q4_0) FP_RUNS(Q8_0) FP_RUNS(Q2_K) FP_RUNS(Q4_K) FP_RUNS(Q5_K) FP_RUNS(Q6_K)
    FP_RUNS(IQ2_XXS) FP_RUNS(IQ2_XS) FP_RUNS(IQ3_XXS)
#undef FP_RUNS
    case DType::F32: dequant_elems<DType::F32><<<grid_for(n, kThreads), kThreads, 0, s>>>(b, n, dst); break;
    case DType::F16: dequant_elems<DType::F16><<<grid_for(n, kThreads), kThreads, 0, s>>>(b, n, dst); break;
    case DType::BF16: dequant_elems<DType::BF16><<<grid_for(n, kThreads), kThreads, 0, s>>>(b, n, dst); break;
    default: fail("internal: dequant dispatch");
  }
  check_launch("dequantize");
}

}  // namespace

bool dequant_supported(DType t) {
  switch (t) {
    case DType::F32: case DType::F16: case DType::BF16: case DType::Q4_0: case DType::Q8_0:
    case DType::Q2_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
    case DType::IQ2_XXS: case DType::IQ2_XS: case DType::IQ3_XXS: return true;
    default: return false;
  }
}

void dequantize(DType t, const void* src, int64_t n, float* dst, Stream s) { dequant_any(t, src, n, dst, s); }

void dequantize_f16(DType t, const void* src, int64_t n, void* dst, Stream s) {
  dequant_any(t, src, n, static_cast<__half*>(dst), s);
}

void quant_cuda_init() {
  upload_iq_tables();
  detail::upload_matvec_tables();
}

}  // namespace fp::cuda
