// sha256_hex for tests that compare bytes with hashes recorded by an oracle: a thin
// wrapper over the planner's fp::Sha256 (planner/plan_io/sha256.h), the one SHA-256
// in the project, whose own test vectors are in tests/planner/plan_io_test.cpp.
#pragma once
#include <cstdint>
#include <span>
#include <string>

#include "planner/plan_io/sha256.h"

namespace fp::test {

inline std::string sha256_hex(std::span<const uint8_t> data) {
  Sha256 h;
  h.update(data.data(), data.size());
  return h.hex();
}

}  // namespace fp::test
