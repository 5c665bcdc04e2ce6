// Engine-level helpers shared by the runtime suites (CPU and GPU): greedy tokens through
// an fp::Engine session, and the message of the fp::Error a call throws.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "ops/core/error.h"
#include "runtime/engine.h"
#include "runtime/sampling/sampler.h"

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

// What `f` throws as fp::Error ("" when it returns).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace fp::test
