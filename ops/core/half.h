// Exact scalar conversions between f32 and the 16-bit float formats (GGUF.md §10).
// Done with integer bit manipulation so results never depend on compiler flags
// (no flush-to-zero, no fp16 arithmetic).
#pragma once
#include <cstdint>
#include <cstring>

namespace fp {

inline float bits_to_f32(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t f32_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 31, man = h & 1023;
  if (exp == 0) {
    if (man == 0) return bits_to_f32(sign);
    // Subnormal f16: normalise into an f32 normal.
    int e = -1;
    do { ++e; man <<= 1; } while ((man & 1024) == 0);
    man &= 1023;
    return bits_to_f32(sign | uint32_t(127 - 15 - e) << 23 | man << 13);
  }
  if (exp == 31) return bits_to_f32(sign | 0x7f800000u | man << 13);
  return bits_to_f32(sign | (exp + 127 - 15) << 23 | man << 13);
}

// IEEE round to nearest even, overflow to infinity, NaN stays NaN (quiet).
inline uint16_t f32_to_f16(float f) {
  const uint32_t u = f32_to_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000);
  const uint32_t abs = u & 0x7fffffff;
  if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00 | ((abs >> 13) & 0x3ff));
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {                                   // below 2^-14: subnormal f16
    // value = abs_f / 2^-24, rounded to nearest even
    const uint32_t exp = abs >> 23;
    if (exp < 102) return sign;                              // < 2^-25: rounds to 0
    const uint32_t man = (abs & 0x7fffff) | 0x800000;
    const uint32_t shift = 126 - exp;                        // 14..24
    uint32_t q = man >> shift;
    const uint32_t rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) ++q;
    return uint16_t(sign | q);
  }
  uint32_t r = abs - (112u << 23);                           // rebias exponent
  const uint32_t rem = r & 0x1fff;
  r >>= 13;
  if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) ++r;
  return uint16_t(sign | r);
}

inline float bf16_to_f32(uint16_t b) { return bits_to_f32(uint32_t(b) << 16); }

inline uint16_t f32_to_bf16(float f) {
  const uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffff) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  return uint16_t((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

}  // namespace fp
