// Engine-level helpers shared by the runtime suites (CPU and GPU): greedy tokens through
// an fp::Engine session (and error_of, from tests/support/error_of.h).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "runtime/engine.h"
#include "runtime/sampling/sampler.h"
#include "tests/support/error_of.h"

namespace fp::test {

// The n greedy tokens after `prompt`, one append per token (an MTP session drafts and
// verifies internally: exact either way).
inline std::vector<int32_t> greedy(Engine& e, const std::vector<int32_t>& prompt, int n) {
  auto s = e.new_session();
  std::vector<int32_t> out;
  int32_t t = argmax_token(s->append(prompt));
  for (int i = 0; i < n; ++i) {
    out.push_back(t);
    t = argmax_token(s->append(std::span<const int32_t>(&t, 1)));
  }
  return out;
}

}  // namespace fp::test
