// Log-probabilities of the model's raw next-token distribution (log-softmax of the
// logits, before temperature or truncation), as vLLM and OpenAI report them.
#pragma once
#include <cstdint>
#include <span>

#include "tools/serve/job.h"

namespace fp::serve {

// The chosen token's logprob and the `top_n` most likely tokens (best first; ties by
// lower id).
TokenLogprob token_logprob(std::span<const float> logits, int32_t chosen, int32_t top_n);

}  // namespace fp::serve
