// Token sampling on the host: greedy, temperature, top-k, top-p, min-p, seeded.
//
// Order (as Hugging Face applies its logits processors): temperature, then top-k on the
// scaled logits, softmax, top-p (smallest prefix of the sorted distribution whose mass
// reaches p), min-p (drop tokens below min_p × the top probability), renormalise, draw.
// temperature <= 0 is greedy: the argmax, ties to the lower id.
//
// The random stream is our own (splitmix64 seeding a xoshiro256**; one draw per sampled
// token), and candidates are ordered by (probability desc, id asc), so the same seed
// gives the same tokens on every machine and for any thread count.
#pragma once
#include <cstdint>
#include <span>

namespace fp {

struct SamplerOptions {
  float temperature = 0.0f;  // <= 0: greedy
  int top_k = 0;             // 0: off
  float top_p = 1.0f;        // >= 1: off
  float min_p = 0.0f;        // <= 0: off
  uint64_t seed = 0;
};

// xoshiro256** seeded through splitmix64.
class Rng {
 public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  double uniform();  // [0, 1) with 53 random bits
 private:
  uint64_t s_[4];
};

class Sampler {
 public:
  explicit Sampler(const SamplerOptions& o);
  const SamplerOptions& options() const { return o_; }
  bool greedy() const { return o_.temperature <= 0.0f; }
  // One token from n_vocab logits. Consumes exactly one random draw unless greedy.
  int32_t sample(std::span<const float> logits);

 private:
  SamplerOptions o_;
  Rng rng_;
};

int32_t argmax_token(std::span<const float> logits);

}  // namespace fp
