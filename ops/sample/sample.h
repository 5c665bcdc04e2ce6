// The sampling family's definition, shared by the CPU reference (sample.cpp) and the CUDA
// kernels (sample.cu): one token from one row of logits, and the random stream.
//
// Function (as Hugging Face orders its logits processors): temperature, top-k on the
// scaled logits, softmax, top-p (smallest prefix of the sorted distribution whose mass
// reaches p), min-p (drop tokens below min_p x the top probability), renormalise, one
// uniform draw. temperature <= 0 is greedy: the argmax, ties to the lower id.
//
// Exactly, so that the device can compute the same thing in any summation order:
//  - Candidates are ordered by (order key desc, id asc); the key orders floats as numbers
//    with -0 == +0 and NaN below every number (and -inf).
//  - Each candidate's softmax weight is a fixed-point integer, w = round(e * 2^shift)
//    with e = exp(l/T - m/T), m the largest logit (e = 1 where l == m, so +inf logits
//    share the mass and a row of only -inf is uniform; e = 0 for NaN). shift =
//    63 - ceil(log2(n_vocab)), so any sum of weights fits 64 bits; integer sums are exact
//    and order-free. Weights below 2^-(shift+1) of the top one round to 0 (a logit gap
//    of more than ~32 nats at T = 1 for DS4's 129280 entries).
//  - top-k keeps the first K = top_k (0 or >= n: all) candidates; C[j] is the prefix sum
//    of weights. top-p keeps the shortest prefix with C >= ceil(top_p * C[K-1]) (at least
//    one; top_p >= 1: off). min-p stops the prefix at the first candidate after the
//    first whose weight is < ceil(min_p * w_0) (min_p <= 0: off). The draw u in [0, 1)
//    (53 bits) picks the first candidate j with C[j] > floor(u * total), total the kept
//    prefix's mass; the last kept one if none (rounding), the first one if total is 0
//    (a row of only NaN).
//  - One draw per sampled token, from xoshiro256** seeded by splitmix64 (greedy draws
//    nothing).
// The RNG and the weight are written once here for host and device (FP_SAMPLE_HD).
#pragma once
#include <cmath>
#include <cstdint>
#include <span>

#if defined(__CUDACC__)
#define FP_SAMPLE_HD __host__ __device__
#else
#define FP_SAMPLE_HD
#endif

namespace fp {

struct SampleParams {
  float temperature = 0.0f;  // <= 0: greedy
  int32_t top_k = 0;         // 0: off
  float top_p = 1.0f;        // >= 1: off
  float min_p = 0.0f;        // <= 0: off
};

// xoshiro256** state.
struct RngState {
  uint64_t s[4];
};

// What a device sampler reads at run time (so a captured graph follows option and RNG
// changes): the RNG first for alignment. Plain data, same layout on host and device.
struct SampleDeviceState {
  RngState rng;
  SampleParams params;
};

// ---- the random stream ------------------------------------------------------------

FP_SAMPLE_HD inline uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

FP_SAMPLE_HD inline RngState rng_seeded(uint64_t seed) {
  RngState r;
  for (auto& s : r.s) s = splitmix64(seed);
  return r;
}

FP_SAMPLE_HD inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

FP_SAMPLE_HD inline uint64_t rng_next(RngState& r) {
  uint64_t* s = r.s;
  const uint64_t result = rotl64(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl64(s[3], 45);
  return result;
}

// [0, 1) with 53 random bits.
FP_SAMPLE_HD inline double rng_uniform(RngState& r) { return double(rng_next(r) >> 11) * 0x1.0p-53; }

// ---- the pieces both sides compute identically ------------------------------------

// The order key (see above): a larger key is a larger logit.
FP_SAMPLE_HD inline uint32_t sample_order_key(float v) {
  if (v != v) return 0;  // NaN
  if (v == 0.0f) v = 0.0f;
  uint32_t b;
  static_assert(sizeof(b) == sizeof(v));
#if defined(__CUDA_ARCH__)
  b = __float_as_uint(v);
#else
  __builtin_memcpy(&b, &v, 4);
#endif
  return (b >> 31) ? ~b : (b | 0x80000000u);
}

// 63 - ceil(log2(n)): the fixed-point shift of the weights of an n-entry row.
FP_SAMPLE_HD inline int sample_weight_shift(int64_t n) {
  int c = 0;
  while ((int64_t(1) << c) < n) ++c;
  return 63 - c;
}

// The weight of logit `l` (see above); `top` is the largest logit of the row (not NaN).
FP_SAMPLE_HD inline uint64_t sample_weight(float l, float top, double temperature, int shift) {
  if (l != l) return 0;
  const double s = double(l) / temperature, m = double(top) / temperature;
  const double one = double(uint64_t(1) << shift);
  if (s == m) return uint64_t(1) << shift;
  const double e = exp(s - m);  // s < m: in [0, 1)
  return uint64_t(e * one + 0.5);
}

// ceil(f * x) for f in [0, 1] (a top-p target, a min-p floor), in double on both sides.
FP_SAMPLE_HD inline uint64_t sample_scaled_ceil(float f, uint64_t x) {
  const double v = ceil(double(f) * double(x));
  return v >= 18446744073709551615.0 ? ~uint64_t(0) : uint64_t(v);
}

// floor(u * total): the draw's threshold in weight units.
FP_SAMPLE_HD inline uint64_t sample_draw_threshold(double u, uint64_t total) {
  const double v = floor(u * double(total));
  return v >= 18446744073709551615.0 ? ~uint64_t(0) : uint64_t(v);
}

// ---- the CPU reference ------------------------------------------------------------

// Greedy: the argmax, ties to the lower id, NaN never wins while a number is left (a row
// of only NaN gives 0). Throws on an empty row.
int32_t argmax_token(std::span<const float> logits);

// Where a draw fell, for parity tests: how close each decision was to flipping (in
// weight units; UINT64_MAX when that decision did not apply).
struct SampleTrace {
  int64_t keep = 0;            // candidates left after top-k, top-p, min-p
  uint64_t total = 0;          // their mass
  uint64_t threshold = 0;      // floor(u * total)
  uint64_t draw_margin = ~uint64_t(0);   // distance of the threshold to the chosen candidate's bounds
  uint64_t top_p_margin = ~uint64_t(0);  // distance of the top-p target to the cut prefix's bounds
  uint64_t min_p_margin = ~uint64_t(0);  // distance of the min-p floor to the weights beside the cut
};

// One token from the row (validates params as fp::Sampler does; throws on an empty row).
// Consumes exactly one draw of `rng` unless greedy.
int32_t sample_token(std::span<const float> logits, const SampleParams& p, RngState& rng, SampleTrace* trace = nullptr);

// Throws fp::Error naming the option when `p` is not valid.
void check_sample_params(const SampleParams& p);

}  // namespace fp
