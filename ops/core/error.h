// fp::Error: the one error type library code throws. Only main() catches it, prints
// its one-line message and exits non-zero. Messages say what, where, the value found
// and what was expected: "blk.7.attn_q_b.weight: dtype Q4_K, expected Q8_0 (model.gguf)".
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace fp {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// Concatenate anything streamable into one string.
template <typename... Args>
std::string str(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(str(std::forward<Args>(args)...));
}

}  // namespace fp
