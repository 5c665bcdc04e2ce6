// Token sampling for a session: the options and the random stream of one generation.
// The function itself is the sampling family's (ops/sample/sample.h): greedy,
// temperature, top-k, top-p, min-p, one seeded draw per sampled token. The same seed
// gives the same tokens on every machine, for any thread count, and on the CUDA
// backend's device sampler (which runs the same function on the device from this
// Sampler's RNG state: see Session::append_sample).
#pragma once
#include <cstdint>
#include <span>

#include "ops/sample/sample.h"

namespace fp {

// The function's parameters (temperature, top-k, top-p, min-p) and the stream's seed.
struct SamplerOptions : SampleParams {
  uint64_t seed = 0;
};

// xoshiro256** seeded through splitmix64.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(rng_seeded(seed)) {}
  uint64_t next() { return rng_next(s_); }
  double uniform() { return rng_uniform(s_); }  // [0, 1) with 53 random bits
  const RngState& state() const { return s_; }
  void set_state(const RngState& s) { s_ = s; }

 private:
  RngState s_;
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& o);
  const SamplerOptions& options() const { return o_; }
  const SampleParams& params() const { return o_; }
  bool greedy() const { return o_.temperature <= 0.0f; }
  // One token from n_vocab logits. Consumes exactly one random draw unless greedy.
  int32_t sample(std::span<const float> logits) { return sample_token(logits, params(), rng_); }

  // The random stream's state: a device sampler takes it before its draw and hands the
  // advanced state back, so host and device draws interleave as one stream.
  const RngState& rng_state() const { return rng_; }
  void set_rng_state(const RngState& s) { rng_ = s; }

 private:
  SamplerOptions o_;
  RngState rng_;
};

}  // namespace fp
