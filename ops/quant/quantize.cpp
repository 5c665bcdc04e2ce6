// Reference quantisers (GGUF.md §11 and §14). Each reproduces ggml's scalar *_ref
// function operation for operation in f32, because gguf-py and ggml agree on those bits
// and the tests compare bytes. This file must stay free of -ffast-math style rewrites:
// the order "x * id, then round" is part of the format's definition.
#include "ops/quant/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops/core/error.h"
#include "ops/core/half.h"

namespace fp {
namespace {

inline void put_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }

// Q8_0: d = max|x| / 127 stored as f16; q = roundf(x * (1/d)) with the unrounded d,
// half away from zero.
void quant_q8_0(const float* x, uint8_t* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 32, b += 34) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::fabs(x[j]) > amax ? std::fabs(x[j]) : amax;
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    put_u16(b, f32_to_f16(d));
    for (int j = 0; j < 32; ++j) b[2 + j] = uint8_t(int8_t(std::roundf(x[j] * id)));
  }
}

// Q4_0: the signed element of largest |x| (first on ties) maps to -8; q = min(15,
// trunc(x * id + 8.5)). Element j goes in the low nibble of byte j, j+16 in the high one.
void quant_q4_0(const float* x, uint8_t* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 32, b += 18) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; ++j)
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    put_u16(b, f32_to_f16(d));
    for (int j = 0; j < 16; ++j) {
      const float x0 = x[j] * id, x1 = x[16 + j] * id;
      const int q0 = std::min(15, int(int8_t(x0 + 8.5f)));
      const int q1 = std::min(15, int(int8_t(x1 + 8.5f)));
      b[2 + j] = uint8_t(q0 | (q1 << 4));
    }
  }
}

// Q8_K: iscale = -127 / max (max = signed element of largest |x|, first on ties),
// q = min(127, round-half-even(iscale * x)), d = 1 / iscale as f32, bsums per 16.
// An all-zero block stores d = 0 and zero quants (and, unlike ggml, zero bsums).
void quant_q8_k(const float* x, uint8_t* b, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += 256, b += 292) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 256; ++j)
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    std::memset(b, 0, 292);
    if (amax == 0.0f) continue;
    const float iscale = -127.0f / max;
    int8_t q[256];
    for (int j = 0; j < 256; ++j)
      q[j] = int8_t(std::min(127, int(std::nearbyint(iscale * x[j]))));  // ties to even
    const float d = 1.0f / iscale;
    std::memcpy(b, &d, 4);
    std::memcpy(b + 4, q, 256);
    for (int s = 0; s < 16; ++s) {
      int sum = 0;
      for (int j = 0; j < 16; ++j) sum += q[16 * s + j];
      const int16_t v = int16_t(sum);
      std::memcpy(b + 260 + 2 * s, &v, 2);
    }
  }
}

void quant_f16(const float* x, uint8_t* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) put_u16(b + 2 * i, f32_to_f16(x[i]));
}

void quant_bf16(const float* x, uint8_t* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) put_u16(b + 2 * i, f32_to_bf16(x[i]));
}

void quant_f32(const float* x, uint8_t* b, int64_t n) { std::memcpy(b, x, size_t(n) * 4); }

using QuantFn = void (*)(const float*, uint8_t*, int64_t);

QuantFn quant_fn(DType t) {
  switch (t) {
    case DType::F32: return quant_f32;
    case DType::F16: return quant_f16;
    case DType::BF16: return quant_bf16;
    case DType::Q4_0: return quant_q4_0;
    case DType::Q8_0: return quant_q8_0;
    case DType::Q8_K: return quant_q8_k;
    default: return nullptr;
  }
}

}  // namespace

bool can_quantize(DType t) { return quant_fn(t) != nullptr; }

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
  const QuantFn fn = quant_fn(t);
  if (!fn) fail("quantize: type ", dtype_name(t), " cannot be quantised by flashplan");
  const int64_t block = traits(t).block;
  if (n < 0 || n % block != 0)
    fail("quantize: ", n, " elements to ", dtype_name(t), ", expected a multiple of ", block);
  fn(src, static_cast<uint8_t*>(dst), n / block);
}

}  // namespace fp
