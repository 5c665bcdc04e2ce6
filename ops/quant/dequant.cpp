// Scalar dequantisers, one per block format, transcribed from GGUF.md §11.
// Layout reminders sit beside each kernel; the formulas themselves are the spec's.
#include "ops/quant/dequant.h"

#include <cstring>

#include "ops/core/error.h"
#include "ops/core/half.h"
#include "ops/quant/dequant_avx2.h"
#include "ops/quant/iq_tables.h"
#include "ops/quant/lanes.h"

namespace fp {
namespace {

inline uint16_t u16(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, 2); return v; }
inline uint32_t u32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
inline float h(const uint8_t* p) { return f16_to_f32(u16(p)); }

// 6-bit scale and min of sub-block j in the 12 packed bytes of Q4_K / Q5_K.
inline void scale_min_k4(int j, const uint8_t* s, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 63;
    m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// ---- 16/32-bit floats ---------------------------------------------------------

void deq_f32(const uint8_t* __restrict src, float* __restrict y, int64_t n) { std::memcpy(y, src, size_t(n) * 4); }

void deq_f16(const uint8_t* __restrict src, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = f16_to_f32(u16(src + 2 * i));
}

void deq_bf16(const uint8_t* __restrict src, float* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(u16(src + 2 * i));
}

// ---- 32-element blocks ------------------------------------------------------------

// Q4_0: d f16 | qs[16]; low nibbles are elements 0-15, high nibbles 16-31.
void deq_q4_0(const uint8_t* __restrict b, float* __restrict y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 18, y += 32) {
    const float d = h(b);
    for (int j = 0; j < 16; ++j) {
      y[j] = float((b[2 + j] & 15) - 8) * d;
      y[j + 16] = float((b[2 + j] >> 4) - 8) * d;
    }
  }
}

// Q8_0: d f16 | qs int8[32].
void deq_q8_0(const uint8_t* __restrict b, float* __restrict y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 34, y += 32) {
    const float d = h(b);
    for (int j = 0; j < 32; ++j) y[j] = float(int8_t(b[2 + j])) * d;
  }
}

// ---- K-quants (256-element super-blocks) -----------------------------------------

// Q2_K: scales[16] | qs[64] | d f16 | dmin f16. Sub-blocks of 16; each qs byte feeds
// four outputs 32 apart.
void deq_q2_k(const uint8_t* __restrict b, float* __restrict y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 84, y += 256) {
    const uint8_t* scales = b;
    const uint8_t* qs = b + 16;
    const float d = h(b + 80), dmin = h(b + 82);
    // Output e = 128*half + 32*g + 16*k + l uses sub-block s = e / 16 and bits 2g..2g+1
    // of qs[32*half + 16*k + l]: loops in that order keep the inner run branch-free.
    for (int half = 0; half < 2; ++half)
      for (int g = 0; g < 4; ++g)
        for (int k = 0; k < 2; ++k) {
          const int s = 8 * half + 2 * g + k;
          const float dl = d * float(scales[s] & 15), ml = dmin * float(scales[s] >> 4);
          const uint8_t* q = qs + 32 * half + 16 * k;
          float* out = y + 16 * s;
          for (int l = 0; l < 16; ++l) out[l] = dl * float((q[l] >> (2 * g)) & 3) - ml;
        }
  }
}

// Q4_K: d f16 | dmin f16 | scales[12] | qs[128]. Sub-blocks of 32.
void deq_q4_k(const uint8_t* __restrict b, float* __restrict y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 144, y += 256) {
    const float d = h(b), dmin = h(b + 2);
    const uint8_t* scales = b + 4;
    const uint8_t* qs = b + 16;
    // Sub-blocks 2c and 2c+1 share qs[32c .. 32c+31]: low nibbles, then high nibbles.
    for (int c = 0; c < 4; ++c) {
      int sc0, m0, sc1, m1;
      scale_min_k4(2 * c, scales, sc0, m0);
      scale_min_k4(2 * c + 1, scales, sc1, m1);
      const float d0 = d * float(sc0), n0 = dmin * float(m0);
      const float d1 = d * float(sc1), n1 = dmin * float(m1);
      const uint8_t* q = qs + 32 * c;
      float* out = y + 64 * c;
      for (int l = 0; l < 32; ++l) out[l] = d0 * float(q[l] & 15) - n0;
      for (int l = 0; l < 32; ++l) out[32 + l] = d1 * float(q[l] >> 4) - n1;
    }
  }
}

// Q5_K: d f16 | dmin f16 | scales[12] | qh[32] | qs[128]. Bit j of qh[l] is the fifth
// bit of element l of sub-block j.
void deq_q5_k(const uint8_t* __restrict b, float* __restrict y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 176, y += 256) {
    const float d = h(b), dmin = h(b + 2);
    const uint8_t* scales = b + 4;
    const uint8_t* qh = b + 16;
    const uint8_t* qs = b + 48;
    for (int c = 0; c < 4; ++c) {
      int sc0, m0, sc1, m1;
      scale_min_k4(2 * c, scales, sc0, m0);
      scale_min_k4(2 * c + 1, scales, sc1, m1);
      const float d0 = d * float(sc0), n0 = dmin * float(m0);
      const float d1 = d * float(sc1), n1 = dmin * float(m1);
      const uint8_t* q = qs + 32 * c;
      float* out = y + 64 * c;
      for (int l = 0; l < 32; ++l)
        out[l] = d0 * float((q[l] & 15) + 16 * ((qh[l] >> (2 * c)) & 1)) - n0;
      for (int l = 0; l < 32; ++l)
        out[32 + l] = d1 * float((q[l] >> 4) + 16 * ((qh[l] >> (2 * c + 1)) & 1)) - n1;
    }
  }
}

// Q6_K: ql[128] | qh[64] | scales int8[16] | d f16.
void deq_q6_k(const uint8_t* __restrict b, float* __restrict y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 210, y += 256) {
    const uint8_t* ql = b;
    const uint8_t* qh = b + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    const float d = h(b + 208);
    // Output e = 128*half + 32*g + l: low nibble (g < 2) or high nibble of
    // ql[64*half + 32*(g&1) + l], bits 2g..2g+1 of qh[32*half + l], scale e / 16.
    for (int half = 0; half < 2; ++half)
      for (int g = 0; g < 4; ++g) {
        const uint8_t* lo = ql + 64 * half + 32 * (g & 1);
        const uint8_t* hi = qh + 32 * half;
        const int lshift = g < 2 ? 0 : 4;
        float* out = y + 128 * half + 32 * g;
        for (int k = 0; k < 2; ++k) {
          const float dl = d * float(sc[(128 * half + 32 * g + 16 * k) / 16]);
          for (int l = 16 * k; l < 16 * k + 16; ++l) {
            const int q = (((lo[l] >> lshift) & 15) | (((hi[l] >> (2 * g)) & 3) << 4)) - 32;
            out[l] = dl * float(q);
          }
        }
      }
  }
}

// Q8_K: d f32 | qs int8[256] | bsums int16[16] (bsums are not needed to dequantise).
void deq_q8_k(const uint8_t* __restrict b, float* __restrict y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 292, y += 256) {
    float d;
    std::memcpy(&d, b, 4);
    for (int e = 0; e < 256; ++e) y[e] = d * float(int8_t(b[4 + e]));
  }
}

// ---- IQ types ---------------------------------------------------------------------

// One run of 8 outputs: grid magnitudes (bytes of G) times db, signs from ksigns.
// Bit j of signs (kmask_iq2xs[j] = 1 << j) negates output j. Negation is done on the
// sign bit (what -v is) so random signs cost no mispredicted branches.
inline void iq_run8(float db, uint64_t G, uint32_t signs, float* __restrict y) {
  for (int j = 0; j < 8; ++j) {
    const uint32_t v = f32_to_bits(db * float((G >> (8 * j)) & 255));
    y[j] = bits_to_f32(v ^ (((signs >> j) & 1u) << 31));
  }
}

// IQ2_XXS: d f16 | 8 groups of (a u32: 4 grid indices, w u32: 4x7 sign bits + scale).
void deq_iq2_xxs(const uint8_t* __restrict b, float* __restrict y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 66, y += 256) {
    const float d = h(b);
    for (int g = 0; g < 8; ++g) {
      const uint32_t a = u32(b + 2 + 8 * g), w = u32(b + 6 + 8 * g);
      const float db = d * (0.5f + float(w >> 28)) * 0.25f;
      for (int l = 0; l < 4; ++l)
        iq_run8(db, iq::kIq2xxsGrid[(a >> (8 * l)) & 255], iq::kSignsIq2xs[(w >> (7 * l)) & 127],
                y + 32 * g + 8 * l);
    }
  }
}

// IQ2_XS: d f16 | qs u16[32] (9-bit grid index, 7-bit sign index) | scales[8].
void deq_iq2_xs(const uint8_t* __restrict b, float* __restrict y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 74, y += 256) {
    const float d = h(b);
    for (int g = 0; g < 8; ++g) {
      const uint8_t S = b[66 + g];
      const float db[2] = {d * (0.5f + float(S & 15)) * 0.25f, d * (0.5f + float(S >> 4)) * 0.25f};
      for (int l = 0; l < 4; ++l) {
        const uint16_t v = u16(b + 2 + 2 * (4 * g + l));
        iq_run8(db[l / 2], iq::kIq2xsGrid[v & 511], iq::kSignsIq2xs[v >> 9], y + 32 * g + 8 * l);
      }
    }
  }
}

// IQ3_XXS: d f16 | qs[64] grid indices | 8 x u32 (4x7 sign bits + 4-bit scale).
void deq_iq3_xxs(const uint8_t* __restrict b, float* __restrict y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, b += 98, y += 256) {
    const float d = h(b);
    const uint8_t* qs = b + 2;
    for (int g = 0; g < 8; ++g) {
      const uint32_t w = u32(b + 66 + 4 * g);
      const float db = d * (0.5f + float(w >> 28)) * 0.5f;
      for (int l = 0; l < 4; ++l) {
        const uint64_t G = uint64_t(iq::kIq3xxsGrid[qs[8 * g + 2 * l]]) |
                           uint64_t(iq::kIq3xxsGrid[qs[8 * g + 2 * l + 1]]) << 32;
        iq_run8(db, G, iq::kSignsIq2xs[(w >> (7 * l)) & 127], y + 32 * g + 8 * l);
      }
    }
  }
}

}  // namespace

DequantBlocksFn dequant_blocks_fn(DType t) {
  if (simd::avx2_active())
    if (const DequantBlocksFn fast = detail::dequant_avx2_fn(t)) return fast;
  switch (t) {
    case DType::F32: return deq_f32;
    case DType::F16: return deq_f16;
    case DType::BF16: return deq_bf16;
    case DType::Q4_0: return deq_q4_0;
    case DType::Q8_0: return deq_q8_0;
    case DType::Q2_K: return deq_q2_k;
    case DType::Q4_K: return deq_q4_k;
    case DType::Q5_K: return deq_q5_k;
    case DType::Q6_K: return deq_q6_k;
    case DType::Q8_K: return deq_q8_k;
    case DType::IQ2_XXS: return deq_iq2_xxs;
    case DType::IQ2_XS: return deq_iq2_xs;
    case DType::IQ3_XXS: return deq_iq3_xxs;
    default: return nullptr;
  }
}

bool can_dequantize(DType t) { return dequant_blocks_fn(t) != nullptr; }

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  const DequantBlocksFn fn = dequant_blocks_fn(t);
  if (!fn) fail("dequantize: type ", dtype_name(t), " cannot be dequantised");
  const int64_t block = traits(t).block;
  if (n < 0 || n % block != 0)
    fail("dequantize: ", n, " elements of ", dtype_name(t), ", expected a multiple of ", block);
  fn(static_cast<const uint8_t*>(src), dst, n / block);
}

}  // namespace fp
