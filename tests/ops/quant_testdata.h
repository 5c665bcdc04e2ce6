// Helpers for the quant tests: read the copied gguf-py oracle (tests/data/quant/, see
// tests/data/README.md) through its index.json, so sizes are never hard-coded here.
#pragma once
#include <cstdint>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace fp::test {

inline std::string quant_data_dir() { return std::string(FLASHPLAN_TEST_DATA) + "/quant/"; }

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

inline std::vector<float> as_f32(const std::vector<uint8_t>& b) {
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

inline nlohmann::json quant_index() {
  std::ifstream f(quant_data_dir() + "index.json");
  if (!f) throw std::runtime_error("cannot open " + quant_data_dir() + "index.json");
  return nlohmann::json::parse(f);
}

// The index entry of `kind` for `type`; throws if absent.
inline nlohmann::json quant_entry(const nlohmann::json& index, const std::string& type,
                                  const std::string& kind) {
  for (const auto& e : index["files"])
    if (e["type"] == type && e["kind"] == kind) return e;
  throw std::runtime_error("index.json has no " + kind + " entry for " + type);
}

inline uint32_t bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

}  // namespace fp::test

#include <random>

#include "ops/core/half.h"
#include "ops/quant/types.h"

namespace fp::test {

// Byte offsets of the f16 scale fields in a block (oracle README / GGUF.md §11).
inline std::vector<int> f16_scale_offsets(DType t) {
  switch (t) {
    case DType::Q8_0: case DType::Q4_0: case DType::IQ2_XXS: case DType::IQ2_XS:
    case DType::IQ3_XXS: return {0};
    case DType::Q2_K: return {80, 82};
    case DType::Q4_K: case DType::Q5_K: return {0, 2};
    case DType::Q6_K: return {208};
    default: return {};
  }
}

// Random valid weight data of n elements of t, drawn as the oracle's blocks were: random
// bytes, f16 scales log-uniform in [1e-3, 1] with a random sign. Float types get
// standard-normal values.
inline std::vector<uint8_t> random_weights(DType t, int64_t n, std::mt19937_64& rng) {
  std::vector<uint8_t> out(size_t(row_bytes(t, n)));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  if (t == DType::F32 || t == DType::F16 || t == DType::BF16) {
    for (int64_t i = 0; i < n; ++i) {
      const float v = nd(rng);
      if (t == DType::F32) std::memcpy(&out[4 * i], &v, 4);
      const uint16_t hv = t == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
      if (t != DType::F32) std::memcpy(&out[2 * i], &hv, 2);
    }
    return out;
  }
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<double> lg(std::log(1e-3), 0.0);
  for (auto& b : out) b = uint8_t(byte(rng));
  const int64_t bytes = traits(t).bytes;
  for (int64_t b = 0; b < int64_t(out.size()) / bytes; ++b)
    for (int off : f16_scale_offsets(t)) {
      const float v = float(std::exp(lg(rng))) * (byte(rng) & 1 ? -1.0f : 1.0f);
      const uint16_t hv = f32_to_f16(v);
      std::memcpy(&out[size_t(b * bytes + off)], &hv, 2);
    }
  return out;
}

// Activations: standard normal times a per-32 factor log-uniform in [0.01, 10]; nonzero.
inline std::vector<float> random_activations(int64_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<double> lg(std::log(0.01), std::log(10.0));
  std::vector<float> x(static_cast<size_t>(n));
  float scale = 1.0f;
  for (int64_t i = 0; i < n; ++i) {
    if (i % 32 == 0) scale = float(std::exp(lg(rng)));
    float v = nd(rng);
    while (v == 0.0f) v = nd(rng);
    x[i] = v * scale;
  }
  return x;
}

}  // namespace fp::test
