// RMSNorm, the rms_norm op (MODEL.md §4, §11.4): y = x / sqrt(mean(x²) + eps) ⊙ w.
// Weighted for attn_norm, q_a_norm, kv_a_norm, ffn_norm, compressor norms, output_norm
// and the MTP norms; unweighted (w = nullptr) for the HC flat norm and the per-head q
// norm. The sum of squares is taken in double (as ds4 does), the scale applied in f32.
#pragma once
#include <cstdint>

namespace fp::ref {

// n rows of `dim` values, row stride `dim`; x and y may be the same buffer.
void rms_norm(const float* x, const float* w, float* y, int64_t n, int64_t dim, float eps);

// One row.
void rms_norm_row(const float* x, const float* w, float* y, int64_t dim, float eps);

}  // namespace fp::ref
