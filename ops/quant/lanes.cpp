// Lane accumulation and f16 conversion: scalar code plus AVX2/FMA/F16C versions chosen
// at run time (the binary is built for baseline x86-64; only these functions carry
// target attributes). Both versions give identical bits, which tests check.
#include "ops/quant/lanes.h"

#include <atomic>
#include <cstring>

#include "ops/core/half.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define FP_HAVE_X86 1
#endif

namespace fp {
namespace {

void accumulate_scalar(Lanes& acc, const float* w, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc.v[i % 16] += double(w[i]) * double(x[i]);
}

inline uint16_t load_u16(const uint8_t* p) { uint16_t v; std::memcpy(&v, p, 2); return v; }

void f16_scalar(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(load_u16(src + 2 * i));
}

#ifdef FP_HAVE_X86
__attribute__((target("avx2,fma"))) void accumulate_avx2(Lanes& acc, const float* w, const float* x,
                                                         int64_t n) {
  __m256d a0 = _mm256_load_pd(acc.v), a1 = _mm256_load_pd(acc.v + 4);
  __m256d a2 = _mm256_load_pd(acc.v + 8), a3 = _mm256_load_pd(acc.v + 12);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 w0 = _mm256_loadu_ps(w + i), w1 = _mm256_loadu_ps(w + i + 8);
    const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
    a0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(w0)),
                         _mm256_cvtps_pd(_mm256_castps256_ps128(x0)), a0);
    a1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(w0, 1)),
                         _mm256_cvtps_pd(_mm256_extractf128_ps(x0, 1)), a1);
    a2 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(w1)),
                         _mm256_cvtps_pd(_mm256_castps256_ps128(x1)), a2);
    a3 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(w1, 1)),
                         _mm256_cvtps_pd(_mm256_extractf128_ps(x1, 1)), a3);
  }
  _mm256_store_pd(acc.v, a0);
  _mm256_store_pd(acc.v + 4, a1);
  _mm256_store_pd(acc.v + 8, a2);
  _mm256_store_pd(acc.v + 12, a3);
  for (; i < n; ++i) acc.v[i % 16] += double(w[i]) * double(x[i]);
}

__attribute__((target("avx2,f16c"))) void f16_f16c(const uint8_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i))));
  for (; i < n; ++i) dst[i] = f16_to_f32(load_u16(src + 2 * i));
}

bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}
#else
bool cpu_has_avx2() { return false; }
#endif

std::atomic<bool> g_allowed{true};

bool use_avx2() {
  static const bool has = cpu_has_avx2();
  return has && g_allowed.load(std::memory_order_relaxed);
}

}  // namespace

void lanes_accumulate(Lanes& acc, const float* w, const float* x, int64_t n) {
#ifdef FP_HAVE_X86
  if (use_avx2()) return accumulate_avx2(acc, w, x, n);
#endif
  accumulate_scalar(acc, w, x, n);
}

double lanes_sum(const Lanes& acc) {
  double s[8], t[4];
  for (int k = 0; k < 8; ++k) s[k] = acc.v[k] + acc.v[k + 8];
  for (int k = 0; k < 4; ++k) t[k] = s[k] + s[k + 4];
  return (t[0] + t[2]) + (t[1] + t[3]);
}

void f16_row_to_f32(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const uint8_t*>(src);
#ifdef FP_HAVE_X86
  if (use_avx2()) return f16_f16c(b, dst, n);
#endif
  f16_scalar(b, dst, n);
}

namespace simd {
bool avx2_active() { return use_avx2(); }
void set_avx2_allowed(bool allowed) { g_allowed.store(allowed, std::memory_order_relaxed); }
}  // namespace simd

}  // namespace fp
