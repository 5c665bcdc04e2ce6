// AVX2 IQ2_XXS / IQ2_XS / IQ3_XXS dequantisers. The block walks mirror dequant.cpp's
// scalar ones line for line; only the run of 8 differs: widen the 8 grid bytes to f32,
// multiply by db (exact), flip sign bits selected by the 8 sign bits. Tests run every
// oracle vector through both versions.
#include "ops/quant/dequant_avx2.h"

#include <cstring>

#include "ops/core/half.h"
#include "ops/quant/iq_tables.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

namespace fp::detail {
namespace {

inline uint16_t u16(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, 2); return v; }
inline uint32_t u32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }

__attribute__((target("avx2"))) inline void run8(float db, uint64_t G, uint32_t signs, float* y) {
  const __m256 mag = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(G))));
  const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i neg = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(int(signs)), bit), bit);
  const __m256 v = _mm256_mul_ps(_mm256_set1_ps(db), mag);
  _mm256_storeu_ps(y, _mm256_xor_ps(v, _mm256_castsi256_ps(_mm256_slli_epi32(neg, 31))));
}

__attribute__((target("avx2"))) void iq2_xxs(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 66, y += 256) {
    const float d = f16_to_f32(u16(b));
    for (int g = 0; g < 8; ++g) {
      const uint32_t a = u32(b + 2 + 8 * g), w = u32(b + 6 + 8 * g);
      const float db = d * (0.5f + float(w >> 28)) * 0.25f;
      for (int l = 0; l < 4; ++l)
        run8(db, iq::kIq2xxsGrid[(a >> (8 * l)) & 255], iq::kSignsIq2xs[(w >> (7 * l)) & 127],
             y + 32 * g + 8 * l);
    }
  }
}

__attribute__((target("avx2"))) void iq2_xs(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 74, y += 256) {
    const float d = f16_to_f32(u16(b));
    for (int g = 0; g < 8; ++g) {
      const uint8_t S = b[66 + g];
      const float db[2] = {d * (0.5f + float(S & 15)) * 0.25f, d * (0.5f + float(S >> 4)) * 0.25f};
      for (int l = 0; l < 4; ++l) {
        const uint16_t v = u16(b + 2 + 2 * (4 * g + l));
        run8(db[l / 2], iq::kIq2xsGrid[v & 511], iq::kSignsIq2xs[v >> 9], y + 32 * g + 8 * l);
      }
    }
  }
}

__attribute__((target("avx2"))) void iq3_xxs(const uint8_t* b, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 98, y += 256) {
    const float d = f16_to_f32(u16(b));
    const uint8_t* qs = b + 2;
    for (int g = 0; g < 8; ++g) {
      const uint32_t w = u32(b + 66 + 4 * g);
      const float db = d * (0.5f + float(w >> 28)) * 0.5f;
      for (int l = 0; l < 4; ++l) {
        const uint64_t G = uint64_t(iq::kIq3xxsGrid[qs[8 * g + 2 * l]]) |
                           uint64_t(iq::kIq3xxsGrid[qs[8 * g + 2 * l + 1]]) << 32;
        run8(db, G, iq::kSignsIq2xs[(w >> (7 * l)) & 127], y + 32 * g + 8 * l);
      }
    }
  }
}

}  // namespace

DequantBlocksFn dequant_avx2_fn(DType t) {
  switch (t) {
    case DType::IQ2_XXS: return iq2_xxs;
    case DType::IQ2_XS: return iq2_xs;
    case DType::IQ3_XXS: return iq3_xxs;
    default: return nullptr;
  }
}

}  // namespace fp::detail

#else

namespace fp::detail {
DequantBlocksFn dequant_avx2_fn(DType) { return nullptr; }
}  // namespace fp::detail

#endif
