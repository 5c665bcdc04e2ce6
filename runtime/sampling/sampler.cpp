// Sampler (see sampler.h): the options are checked once here; the function and the
// random stream are the sampling family's (ops/sample/sample.cpp).
#include "runtime/sampling/sampler.h"

namespace fp {

Sampler::Sampler(const SamplerOptions& o) : o_(o), rng_(rng_seeded(o.seed)) { check_sample_params(params()); }

}  // namespace fp
