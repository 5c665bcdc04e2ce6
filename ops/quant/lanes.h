// The one summation order every f32 dot product in flashplan's CPU reference uses.
//
// Element i of a row goes into double lane i % 16; each lane adds its elements in index
// order; at the end the lanes are folded by a fixed tree (k + k+8, then +4, +2, +1) and
// rounded once to f32. A product of two floats is exact in double, so a fused
// multiply-add and a separate multiply and add give the same bits: the AVX2 kernel and
// the scalar twin below agree bit for bit, on every machine and for any thread count.
// Callers may feed a row in pieces as long as each piece starts at a multiple of 16.
#pragma once
#include <cstdint>

namespace fp {

struct Lanes {
  alignas(32) double v[16] = {};
};

// acc.v[i % 16] += double(w[i]) * double(x[i]) for i in [0, n).
void lanes_accumulate(Lanes& acc, const float* w, const float* x, int64_t n);

// The fixed fold of the 16 lanes.
double lanes_sum(const Lanes& acc);

// n little-endian f16 values at src (any alignment) -> f32 (F16C when available; the
// conversion is exact, so both paths give the same values).
void f16_row_to_f32(const void* src, float* dst, int64_t n);

namespace simd {
// Whether the AVX2 kernels (here and in dequant_avx2.cpp) are in use on this machine.
// Tests switch them off to check that the scalar twins give the same bits; nothing
// else should.
bool avx2_active();
void set_avx2_allowed(bool allowed);
}  // namespace simd

}  // namespace fp
