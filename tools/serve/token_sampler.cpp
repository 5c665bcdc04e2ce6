// TokenSampler over the runtime sampler (see token_sampler.h).
#include "tools/serve/token_sampler.h"

#include "runtime/sampling/sampler.h"

namespace fp::serve {

struct TokenSampler::Impl {
  Sampler sampler;
};

namespace {
SamplerOptions runtime_options(const SamplingOptions& o, uint64_t seed) {
  SamplerOptions r;
  r.temperature = o.temperature;
  r.top_k = o.top_k;
  r.top_p = o.top_p;
  r.min_p = o.min_p;
  r.seed = seed;
  return r;
}
}  // namespace

TokenSampler::TokenSampler(const SamplingOptions& options, uint64_t seed)
    : impl_(std::make_unique<Impl>(Impl{Sampler(runtime_options(options, seed))})) {}

TokenSampler::~TokenSampler() = default;

int32_t TokenSampler::sample(std::span<const float> logits) { return impl_->sampler.sample(logits); }

Sampler& TokenSampler::runtime_sampler() { return impl_->sampler; }

}  // namespace fp::serve
