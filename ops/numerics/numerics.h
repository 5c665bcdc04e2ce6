// Activation round trips of the official DS4 graph (MODEL.md §5.7, §11.13-14): FP8 E4M3FN
// for the non-RoPE part of stored KV rows, a Sylvester Hadamard rotation followed by FP4
// E2M1 for indexer queries and keys, and F16 rounding of stored rows. They run only in
// `official` numerics; `plain` numerics (what transformers computes) skips them.
//
// Both formats round to nearest, ties to the even code, which on these grids is plain
// round-half-even of the mantissa (adjacent codes alternate parity, also across binade
// edges). Scales follow ds4: a power of two, 2^ceil(log2(amax / max_code)), computed
// with float log2 exactly as ds4 does so the same blocks get the same scale.
#pragma once
#include <cstdint>

namespace fp::ref {

inline constexpr float kFp8E4M3Max = 448.0f;
inline constexpr float kFp4E2M1Max = 6.0f;
inline constexpr int64_t kFp8KvBlock = 64;       // values sharing one FP8 scale
inline constexpr int64_t kFp4Block = 32;         // values sharing one FP4 scale
inline constexpr float kFp8AmaxFloor = 1e-4f;
inline constexpr float kFp4AmaxFloor = 7.052966104933725e-38f;  // 6 * 2^-126

// E4M3FN codes: sign, 4 exponent bits (bias 7), 3 mantissa bits; 0x7f/0xff are NaN,
// no infinities, largest finite 448, subnormal step 2^-9.
float fp8_e4m3_decode(uint8_t code);
uint8_t fp8_e4m3_encode(float x);   // nearest, ties to even; |x| > 448 saturates
float fp8_e4m3_round(float x);      // decode(encode(x)) without the table

// E2M1 codes: sign bit + 3 bits indexing {0, 0.5, 1, 1.5, 2, 3, 4, 6}.
float fp4_e2m1_decode(uint8_t code);
uint8_t fp4_e2m1_encode(float x);   // nearest, ties to even; |x| > 6 saturates
float fp4_e2m1_round(float x);

float f16_round(float x);           // f32 -> f16 (nearest even) -> f32
void f16_round_inplace(float* x, int64_t n);

// FP8 round trip of x[0..n_nope) in blocks of 64 (the last block may be shorter): per
// block amax = max(|x|, 1e-4), scale = 2^ceil(log2(amax/448)), x = e4m3(x/scale)*scale.
void fp8_kv_round_trip(float* x, int64_t n_nope);

// FP4 round trip of x[0..n) in blocks of 32 with scale 2^ceil(log2(amax/6)).
void fp4_round_trip(float* x, int64_t n);

// In-place Sylvester Hadamard transform scaled by 1/sqrt(n); n a power of two.
void hadamard_inplace(float* x, int64_t n);

// The indexer's quantisation-aware round trip of one head row: Hadamard, then FP4.
void indexer_qat_row(float* x, int64_t n);

}  // namespace fp::ref
