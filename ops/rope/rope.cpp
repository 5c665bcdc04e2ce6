// RoPE frequency tables (with the YaRN ramp) and the tail rotation (see rope.h).
#include "ops/rope/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "ops/core/error.h"

namespace fp::ref {

Rope::Rope(const RopeParams& p) : n_rot_(p.n_rot) {
  if (p.n_rot <= 0 || p.n_rot % 2 != 0) fail("rope: n_rot ", p.n_rot, ", expected a positive even number");
  const int64_t half = p.n_rot / 2;
  inv_freq_.resize(size_t(half));
  for (int64_t k = 0; k < half; ++k) inv_freq_[k] = std::pow(p.base, -double(2 * k) / double(p.n_rot));
  if (!p.yarn) return;
  // YaRN: dims whose wavelength is long compared with the original context are
  // interpolated by 1/factor, short ones kept; a linear ramp between "low" and "high".
  auto corr_dim = [&](double beta) {
    return double(p.n_rot) * std::log(p.orig_ctx / (beta * 2.0 * std::numbers::pi)) / (2.0 * std::log(p.base));
  };
  const double low = std::max(0.0, std::floor(corr_dim(p.beta_fast)));
  const double high = std::min(double(p.n_rot - 1), std::ceil(corr_dim(p.beta_slow)));
  const double span = std::max(0.001, high - low);
  for (int64_t k = 0; k < half; ++k) {
    const double ramp = std::clamp((double(k) - low) / span, 0.0, 1.0);  // 0 keep, 1 interpolate
    inv_freq_[k] = inv_freq_[k] / p.factor * ramp + inv_freq_[k] * (1.0 - ramp);
  }
}

void Rope::apply(float* x, int64_t n_heads, int64_t head_dim, int64_t pos, bool inverse) const {
  const int64_t half = n_rot_ / 2;
  double cs[2 * 64 + 2];
  std::vector<double> big;
  double* c = cs;
  if (half > 64) { big.resize(size_t(2 * half)); c = big.data(); }
  double* s = c + half;
  for (int64_t k = 0; k < half; ++k) {
    const double th = double(pos) * inv_freq_[k];
    c[k] = std::cos(th);
    s[k] = inverse ? -std::sin(th) : std::sin(th);
  }
  for (int64_t h = 0; h < n_heads; ++h) {
    float* t = x + h * head_dim + (head_dim - n_rot_);
    for (int64_t k = 0; k < half; ++k) {
      const double a = t[2 * k], b = t[2 * k + 1];
      t[2 * k] = float(a * c[k] - b * s[k]);
      t[2 * k + 1] = float(a * s[k] + b * c[k]);
    }
  }
}

}  // namespace fp::ref
