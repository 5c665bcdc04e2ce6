// The numerics mode recorded in a plan (schemas/plan.fbs enum Numerics, same values):
// `official` applies the activation round trips of the real model's graph (FP8 KV,
// indexer Hadamard+FP4, F16-rounded stored rows, MODEL.md §5.7); `plain` applies none,
// which is what Hugging Face transformers computes.
#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

namespace fp {

enum class Numerics : uint8_t { official = 0, plain = 1 };

inline const char* numerics_name(Numerics n) { return n == Numerics::official ? "official" : "plain"; }

inline std::optional<Numerics> numerics_from_name(std::string_view s) {
  if (s == "official") return Numerics::official;
  if (s == "plain") return Numerics::plain;
  return std::nullopt;
}

}  // namespace fp
