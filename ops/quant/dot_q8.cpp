// Integer block dot products against Q8_0 / Q8_K activations (GGUF.md §14), one kernel
// per weight type. Within a block every sum is an exact int32; the block result
// d_x * (d * S1 - dmin * S2) is formed in double and blocks are summed in double in
// order, so the only f32 rounding is the final one.
#include <cstring>

#include "ops/core/error.h"
#include "ops/core/half.h"
#include "ops/quant/dot.h"
#include "ops/quant/iq_tables.h"

namespace fp {
namespace {

inline uint16_t u16(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, 2); return v; }
inline uint32_t u32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
inline double h(const uint8_t* p) { return f16_to_f32(u16(p)); }

// Q8_K activation block: d f32 | qs int8[256] | bsums int16[16].
struct Q8K {
  double d;
  const int8_t* q;
  int16_t bsums[16];
  explicit Q8K(const uint8_t* b) {
    float f;
    std::memcpy(&f, b, 4);
    d = f;
    q = reinterpret_cast<const int8_t*>(b + 4);
    std::memcpy(bsums, b + 260, 32);
  }
};

inline void scale_min_k4(int j, const uint8_t* s, int& sc, int& m) {
  if (j < 4) {
    sc = s[j] & 63;
    m = s[j + 4] & 63;
  } else {
    sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Signed grid run of 8: sum_j grid_byte_j * (+-1) * q[j].
inline int iq_run8(uint64_t G, uint8_t signs, const int8_t* q) {
  int s = 0;
  for (int j = 0; j < 8; ++j) {
    const int v = int((G >> (8 * j)) & 255) * q[j];
    s += (signs & iq::kMaskIq2xs[j]) ? -v : v;
  }
  return s;
}

// ---- Q8_0 activations -------------------------------------------------------------

double blk_q8_0(const uint8_t* w, const uint8_t* x) {
  const int8_t* a = reinterpret_cast<const int8_t*>(w + 2);
  const int8_t* b = reinterpret_cast<const int8_t*>(x + 2);
  int s = 0;
  for (int j = 0; j < 32; ++j) s += a[j] * b[j];
  return h(w) * h(x) * s;
}

double blk_q4_0(const uint8_t* w, const uint8_t* x) {
  const int8_t* b = reinterpret_cast<const int8_t*>(x + 2);
  int s = 0;
  for (int j = 0; j < 16; ++j) s += ((w[2 + j] & 15) - 8) * b[j] + ((w[2 + j] >> 4) - 8) * b[j + 16];
  return h(w) * h(x) * s;
}

// ---- Q8_K activations -------------------------------------------------------------

double blk_q2_k(const uint8_t* w, const uint8_t* xb) {
  const Q8K x(xb);
  const uint8_t* scales = w;
  const uint8_t* qs = w + 16;
  int s1 = 0, s2 = 0;
  for (int s = 0; s < 16; ++s) {
    int isum = 0;
    for (int e = 16 * s; e < 16 * s + 16; ++e) {
      const int half = e / 128, g = (e % 128) / 32, l = e % 32;
      isum += ((qs[32 * half + l] >> (2 * g)) & 3) * x.q[e];
    }
    s1 += (scales[s] & 15) * isum;
    s2 += (scales[s] >> 4) * x.bsums[s];
  }
  return x.d * (h(w + 80) * s1 - h(w + 82) * s2);
}

// Q4_K and Q5_K share scales; qh == nullptr for Q4_K.
double blk_q45_k(const uint8_t* w, const uint8_t* qh, const uint8_t* qs, const uint8_t* xb) {
  const Q8K x(xb);
  int s1 = 0, s2 = 0;
  for (int j = 0; j < 8; ++j) {
    int sc, m;
    scale_min_k4(j, w + 4, sc, m);
    const uint8_t* q = qs + 32 * (j / 2);
    const int shift = (j & 1) * 4;
    int isum = 0;
    for (int l = 0; l < 32; ++l) {
      int v = (q[l] >> shift) & 15;
      if (qh) v += 16 * ((qh[l] >> j) & 1);
      isum += v * x.q[32 * j + l];
    }
    s1 += sc * isum;
    s2 += m * (x.bsums[2 * j] + x.bsums[2 * j + 1]);
  }
  return x.d * (h(w) * s1 - h(w + 2) * s2);
}

double blk_q4_k(const uint8_t* w, const uint8_t* x) { return blk_q45_k(w, nullptr, w + 16, x); }
double blk_q5_k(const uint8_t* w, const uint8_t* x) { return blk_q45_k(w, w + 16, w + 48, x); }

double blk_q6_k(const uint8_t* w, const uint8_t* xb) {
  const Q8K x(xb);
  const uint8_t* ql = w;
  const uint8_t* qh = w + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(w + 192);
  int s1 = 0;
  for (int s = 0; s < 16; ++s) {
    int isum = 0;
    for (int e = 16 * s; e < 16 * s + 16; ++e) {
      const int half = e / 128, g = (e % 128) / 32, l = e % 32;
      int lo = ql[64 * half + 32 * (g & 1) + l];
      lo = g < 2 ? (lo & 15) : (lo >> 4);
      const int hi = (qh[32 * half + l] >> (2 * g)) & 3;
      isum += ((lo | (hi << 4)) - 32) * x.q[e];
    }
    s1 += sc[s] * isum;
  }
  return x.d * h(w + 208) * s1;
}

// IQ scales are (0.5 + s) * k = (2s + 1) * k / 2: sum (2s + 1) * isum exactly, scale once.
double blk_iq2_xxs(const uint8_t* w, const uint8_t* xb) {
  const Q8K x(xb);
  int s = 0;
  for (int g = 0; g < 8; ++g) {
    const uint32_t a = u32(w + 2 + 8 * g), sg = u32(w + 6 + 8 * g);
    int isum = 0;
    for (int l = 0; l < 4; ++l)
      isum += iq_run8(iq::kIq2xxsGrid[(a >> (8 * l)) & 255], iq::kSignsIq2xs[(sg >> (7 * l)) & 127],
                      x.q + 32 * g + 8 * l);
    s += int(2 * (sg >> 28) + 1) * isum;
  }
  return x.d * h(w) * s * 0.125;
}

double blk_iq2_xs(const uint8_t* w, const uint8_t* xb) {
  const Q8K x(xb);
  int s = 0;
  for (int g = 0; g < 8; ++g) {
    const uint8_t S = w[66 + g];
    int isum[2] = {0, 0};
    for (int l = 0; l < 4; ++l) {
      const uint16_t v = u16(w + 2 + 2 * (4 * g + l));
      isum[l / 2] += iq_run8(iq::kIq2xsGrid[v & 511], iq::kSignsIq2xs[v >> 9], x.q + 32 * g + 8 * l);
    }
    s += (2 * (S & 15) + 1) * isum[0] + (2 * (S >> 4) + 1) * isum[1];
  }
  return x.d * h(w) * s * 0.125;
}

double blk_iq3_xxs(const uint8_t* w, const uint8_t* xb) {
  const Q8K x(xb);
  const uint8_t* qs = w + 2;
  int s = 0;
  for (int g = 0; g < 8; ++g) {
    const uint32_t sg = u32(w + 66 + 4 * g);
    int isum = 0;
    for (int l = 0; l < 4; ++l) {
      const uint64_t G = uint64_t(iq::kIq3xxsGrid[qs[8 * g + 2 * l]]) |
                         uint64_t(iq::kIq3xxsGrid[qs[8 * g + 2 * l + 1]]) << 32;
      isum += iq_run8(G, iq::kSignsIq2xs[(sg >> (7 * l)) & 127], x.q + 32 * g + 8 * l);
    }
    s += int(2 * (sg >> 28) + 1) * isum;
  }
  return x.d * h(w) * s * 0.25;
}

using BlockDot = double (*)(const uint8_t* w, const uint8_t* x);

BlockDot block_dot(DType t) {
  switch (t) {
    case DType::Q8_0: return blk_q8_0;
    case DType::Q4_0: return blk_q4_0;
    case DType::Q2_K: return blk_q2_k;
    case DType::Q4_K: return blk_q4_k;
    case DType::Q5_K: return blk_q5_k;
    case DType::Q6_K: return blk_q6_k;
    case DType::IQ2_XXS: return blk_iq2_xxs;
    case DType::IQ2_XS: return blk_iq2_xs;
    case DType::IQ3_XXS: return blk_iq3_xxs;
    default: return nullptr;
  }
}

}  // namespace

std::optional<DType> q8_activation_type(DType t) {
  switch (t) {
    case DType::Q8_0: case DType::Q4_0: return DType::Q8_0;
    case DType::Q2_K: case DType::Q4_K: case DType::Q5_K: case DType::Q6_K:
    case DType::IQ2_XXS: case DType::IQ2_XS: case DType::IQ3_XXS: return DType::Q8_K;
    default: return std::nullopt;
  }
}

float dot_q8(DType t, const void* w, const void* xq, int64_t n) {
  const BlockDot fn = block_dot(t);
  if (!fn) fail("dot_q8: no quantised-activation dot product for weight type ", dtype_name(t));
  const DType xt = *q8_activation_type(t);
  const int64_t block = traits(t).block;
  if (n < 0 || n % block != 0)
    fail("dot_q8: ", n, " elements of ", dtype_name(t), ", expected a multiple of ", block);
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const uint8_t*>(xq);
  const int64_t wbytes = traits(t).bytes, xbytes = traits(xt).bytes;
  double sum = 0.0;
  for (int64_t b = 0; b < n / block; ++b) sum += fn(wb + b * wbytes, xb + b * xbytes);
  return float(sum);
}

}  // namespace fp
