// Device activation quantisers for the int8 matvecs (quant_cuda.h, ActFormat). They
// reproduce fp::quantize_row(Q8_0 / Q8_K) operation for operation (GGUF.md §11, §14), with
// explicitly rounded intrinsics so no compiler flag can contract or approximate them, so
// fp::matmul_q8 on the CPU sees the very same activations.
#include <climits>

#include "ops/core/pdl.cuh"
#include "ops/quant/cuda_common.cuh"
#include "ops/quant/quant_cuda.h"

namespace fp::cuda {
namespace {

using namespace dev;

// Both quantisers open with the PDL wait (ops/core/pdl.cuh): x comes from the previous
// kernel, and dst may still be read by the previous matvec.

// q8_0: one thread per 32 activations; output grouped by 256: [int8 q x 256][f16 d x 8].
__global__ void quant_q8_0(const float* __restrict__ x, int64_t nblk, uint8_t* __restrict__ dst) {
  wait_prev_grid();
  allow_next_grid();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < nblk; i += int64_t(gridDim.x) * blockDim.x) {
    float v[32];
    const float4* xv = reinterpret_cast<const float4*>(x + 32 * i);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const float4 a = xv[k];
      v[4 * k] = a.x, v[4 * k + 1] = a.y, v[4 * k + 2] = a.z, v[4 * k + 3] = a.w;
    }
    float amax = 0.0f;
    bool bad = false;
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      const float a = fabsf(v[j]);
      amax = a > amax ? a : amax;
      bad |= !isfinite(v[j]);
    }
    const float d = __fdiv_rn(amax, 127.0f);
    const float id = d != 0.0f ? __frcp_rn(d) : 0.0f;
    uint32_t q[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      q[k] = 0;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int t = bad ? 0 : int(roundf(__fmul_rn(v[4 * k + j], id)));
        q[k] |= uint32_t(uint8_t(int8_t(t))) << (8 * j);
      }
    }
    uint8_t* g = dst + (i >> 3) * 272;
    const int sub = int(i & 7);
    uint4* qo = reinterpret_cast<uint4*>(g + 32 * sub);
    qo[0] = make_uint4(q[0], q[1], q[2], q[3]);
    qo[1] = make_uint4(q[4], q[5], q[6], q[7]);
    reinterpret_cast<uint16_t*>(g + 256)[sub] = bad ? uint16_t(0x7e00) : __half_as_ushort(__float2half_rn(d));
  }
}

// q8_k: one warp per 256 activations (lane l: elements 8l .. 8l+7).
__global__ void quant_q8_k(const float* __restrict__ x, int64_t nblk, uint8_t* __restrict__ dst) {
  wait_prev_grid();
  allow_next_grid();
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x >> 5);
  for (int64_t b = blockIdx.x * int64_t(blockDim.x >> 5) + (threadIdx.x >> 5); b < nblk; b += warps) {
    const float4* xv = reinterpret_cast<const float4*>(x + 256 * b + 8 * lane);
    const float4 a0 = xv[0], a1 = xv[1];
    const float v[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
    // The signed element of largest |x|, the first one on ties (as the CPU's scan).
    float am = 0.0f, mx = 0.0f;
    int mi = INT_MAX;
    bool bad = false;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float a = fabsf(v[j]);
      if (a > am) am = a, mx = v[j], mi = 8 * lane + j;
      bad |= !isfinite(v[j]);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float am2 = __shfl_xor_sync(0xffffffffu, am, o), mx2 = __shfl_xor_sync(0xffffffffu, mx, o);
      const int mi2 = __shfl_xor_sync(0xffffffffu, mi, o);
      if (am2 > am || (am2 == am && mi2 < mi)) am = am2, mx = mx2, mi = mi2;
    }
    bad = __any_sync(0xffffffffu, bad);
    uint8_t* out = dst + 292 * b;
    float d = 0.0f;
    uint32_t q[2] = {0, 0};
    int sum = 0;
    if (am != 0.0f && !bad) {
      const float iscale = __fdiv_rn(-127.0f, mx);
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const int t = min(127, __float2int_rn(__fmul_rn(iscale, v[j])));
        sum += t;
        q[j >> 2] |= uint32_t(uint8_t(int8_t(t))) << (8 * (j & 3));
      }
      d = __frcp_rn(iscale);
    }
    if (bad) d = __int_as_float(0x7fc00000);
    sum += __shfl_down_sync(0xffffffffu, sum, 1);
    if (lane == 0) *reinterpret_cast<float*>(out) = d;
    reinterpret_cast<uint32_t*>(out + 4 + 8 * lane)[0] = q[0];
    reinterpret_cast<uint32_t*>(out + 4 + 8 * lane)[1] = q[1];
    if ((lane & 1) == 0) reinterpret_cast<int16_t*>(out + 260)[lane >> 1] = int16_t(sum);
  }
}

int grid_for(int64_t items, int per_cta) {
  const int64_t want = (items + per_cta - 1) / per_cta;
  const int64_t cap = int64_t(sm_count()) * 16;
  return int(want < cap ? (want > 0 ? want : 1) : cap);
}

}  // namespace

void quantize_activations(ActFormat f, const float* x, int64_t n, void* dst, Launch l) {
  const char* what = "cuda quantize_activations";
  if (n < 0) fail(what, ": negative count");
  if (n == 0) return;
  if (!aligned(x, 16) || !aligned(dst, 16)) fail(what, ": source and destination must be 16-byte aligned");
  auto* out = static_cast<uint8_t*>(dst);
  switch (f) {
    case ActFormat::f32:
      check(cudaMemcpyAsync(dst, x, size_t(n) * 4, cudaMemcpyDeviceToDevice, l.stream), what);
      return;
    case ActFormat::q8_0:
      if (n % 32 != 0) fail(what, ": ", n, " activations for q8_0, expected a multiple of 32");
      launch_kernel(&quant_q8_0, grid_for(n / 32, 256), 256, 0, l, what, x, n / 32, out);
      break;
    case ActFormat::q8_k:
      if (n % 256 != 0) fail(what, ": ", n, " activations for q8_k, expected a multiple of 256");
      launch_kernel(&quant_q8_k, grid_for(n / 256, 8), 256, 0, l, what, x, n / 256, out);
      break;
  }
}

}  // namespace fp::cuda
