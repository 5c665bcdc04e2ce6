// The server's one door to the runtime sampler: the OpenAI sampling fields of a
// request -> the next token id from a row of logits, or the runtime sampler itself for
// Session::append_sample (the backend samples: on the GPU, inside the step). `flashplan run` samples with the
// same runtime sampler, which is what makes greedy output through the server
// byte-identical to it.
#pragma once
#include <cstdint>
#include <memory>
#include <span>

#include "tools/serve/job.h"

namespace fp {
class Sampler;
}

namespace fp::serve {

class TokenSampler {
 public:
  TokenSampler(const SamplingOptions& options, uint64_t seed);
  ~TokenSampler();
  int32_t sample(std::span<const float> logits);
  Sampler& runtime_sampler();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fp::serve
