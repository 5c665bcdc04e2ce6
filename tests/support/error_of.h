// The message of the fp::Error a call throws, for tests that check what an error says.
#pragma once
#include <string>

#include "ops/core/error.h"

namespace fp::test {

// What `f` throws as fp::Error ("" when it returns).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace fp::test
