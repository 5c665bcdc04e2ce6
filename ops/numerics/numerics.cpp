// FP8 / FP4 / F16 round trips and the Hadamard rotation (see numerics.h).
#include "ops/numerics/numerics.h"

#include <cmath>
#include <vector>

#include "ops/core/error.h"
#include "ops/core/half.h"

namespace fp::ref {
namespace {

// Round |x| to a grid whose step is 2^(e - mant_bits) within binade [2^e, 2^(e+1)) and a
// fixed subnormal step below 2^min_exp. x / step is exact (power of two), and
// nearbyint rounds half to even in the default rounding mode.
float round_to_minifloat(float ax, int mant_bits, int min_exp) {
  int e = 0;
  std::frexp(ax, &e);          // ax = m * 2^e, m in [0.5, 1): binade exponent is e - 1
  int binade = e - 1;
  if (binade < min_exp) binade = min_exp;
  const float step = std::ldexp(1.0f, binade - mant_bits);
  return std::nearbyint(ax / step) * step;
}

float block_scale(float amax, float max_code) {
  return std::ldexp(1.0f, int(std::ceil(std::log2(amax / max_code))));
}

}  // namespace

float fp8_e4m3_decode(uint8_t code) {
  const float sign = (code & 0x80) ? -1.0f : 1.0f;
  const int exp = (code >> 3) & 15, man = code & 7;
  if (exp == 15 && man == 7) return std::nanf("");
  if (exp == 0) return sign * std::ldexp(float(man), -9);
  return sign * std::ldexp(1.0f + float(man) / 8.0f, exp - 7);
}

float fp8_e4m3_round(float x) {
  if (std::isnan(x)) return x;
  const float ax = std::fmin(std::fabs(x), kFp8E4M3Max);
  const float r = std::fmin(round_to_minifloat(ax, 3, -6), kFp8E4M3Max);
  return std::signbit(x) ? -r : r;
}

uint8_t fp8_e4m3_encode(float x) {
  if (std::isnan(x)) return 0x7f;
  const float r = std::fabs(fp8_e4m3_round(x));
  uint8_t code = 0;
  if (r != 0.0f) {
    int e = 0;
    const float m = std::frexp(r, &e);  // r = m * 2^e
    const int binade = e - 1;
    if (binade < -6) {
      code = uint8_t(std::ldexp(r, 9));  // subnormal: r = man * 2^-9
    } else {
      code = uint8_t((binade + 7) << 3 | int(std::ldexp(m, 4) - 8.0f));
    }
  }
  return uint8_t((std::signbit(x) ? 0x80 : 0) | code);
}

float fp4_e2m1_decode(uint8_t code) {
  static const float values[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  const float v = values[code & 7];
  return (code & 8) ? -v : v;
}

float fp4_e2m1_round(float x) {
  if (std::isnan(x)) return x;
  const float ax = std::fmin(std::fabs(x), kFp4E2M1Max);
  const float r = std::fmin(round_to_minifloat(ax, 1, 0), kFp4E2M1Max);
  return std::signbit(x) ? -r : r;
}

uint8_t fp4_e2m1_encode(float x) {
  const float r = std::fabs(fp4_e2m1_round(x));
  uint8_t code = 0;
  for (uint8_t c = 0; c < 8; ++c)
    if (fp4_e2m1_decode(c) == r) code = c;
  return uint8_t((std::signbit(x) ? 8 : 0) | code);
}

float f16_round(float x) { return f16_to_f32(f32_to_f16(x)); }

void f16_round_inplace(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] = f16_round(x[i]);
}

void fp8_kv_round_trip(float* x, int64_t n_nope) {
  for (int64_t off = 0; off < n_nope; off += kFp8KvBlock) {
    const int64_t len = std::min<int64_t>(kFp8KvBlock, n_nope - off);
    float amax = 0.0f;
    for (int64_t i = 0; i < len; ++i) amax = std::fmax(amax, std::fabs(x[off + i]));
    if (amax < kFp8AmaxFloor) amax = kFp8AmaxFloor;
    const float scale = block_scale(amax, kFp8E4M3Max);
    for (int64_t i = 0; i < len; ++i) {
      float v = x[off + i] / scale;
      v = std::fmin(std::fmax(v, -kFp8E4M3Max), kFp8E4M3Max);
      x[off + i] = fp8_e4m3_round(v) * scale;
    }
  }
}

void fp4_round_trip(float* x, int64_t n) {
  for (int64_t off = 0; off < n; off += kFp4Block) {
    const int64_t len = std::min<int64_t>(kFp4Block, n - off);
    float amax = 0.0f;
    for (int64_t i = 0; i < len; ++i) amax = std::fmax(amax, std::fabs(x[off + i]));
    if (amax < kFp4AmaxFloor) amax = kFp4AmaxFloor;
    const float scale = block_scale(amax, kFp4E2M1Max);
    for (int64_t i = 0; i < len; ++i) {
      float v = x[off + i] / scale;
      v = std::fmin(std::fmax(v, -kFp4E2M1Max), kFp4E2M1Max);
      x[off + i] = fp4_e2m1_round(v) * scale;
    }
  }
}

void hadamard_inplace(float* x, int64_t n) {
  if (n <= 0 || (n & (n - 1)) != 0) fail("hadamard: length ", n, ", expected a power of two");
  for (int64_t h = 1; h < n; h *= 2) {
    for (int64_t i = 0; i < n; i += 2 * h) {
      for (int64_t j = i; j < i + h; ++j) {
        const float a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
    }
  }
  const float s = float(1.0 / std::sqrt(double(n)));
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

void indexer_qat_row(float* x, int64_t n) {
  hadamard_inplace(x, n);
  fp4_round_trip(x, n);
}

}  // namespace fp::ref
