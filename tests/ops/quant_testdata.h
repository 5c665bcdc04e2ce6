// Helpers for the quant tests: read the copied gguf-py oracle (tests/data/quant/, see
// tests/data/README.md) through its index.json, so sizes are never hard-coded here.
#pragma once
#include <cstdint>
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
