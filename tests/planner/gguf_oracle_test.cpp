// The GGUF reader against files written by gguf-py and the JSON that describes them
// (tests/data/gguf/*.expected.json, cross-checked by the oracle against ggml's reader):
// header fields, every metadata value (floats by their bits), every tensor's place,
// raw-byte sha256 and the sha256 of its dequantisation through fp::dequantize_row.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "ops/core/error.h"
#include "ops/quant/dequant.h"
#include "planner/gguf/gguf.h"
#include "tests/support/sha256.h"

using fp::gguf::File;
using fp::gguf::Value;
using fp::gguf::ValueType;
using nlohmann::json;

namespace {

std::string data_path(const std::string& rel) { return std::string(FLASHPLAN_TEST_DATA) + "/gguf/" + rel; }

json load_json(const std::string& rel) {
  std::ifstream in(data_path(rel));
  REQUIRE(in.good());
  return json::parse(in);
}

uint64_t parse_hex(const std::string& s) { return std::stoull(s, nullptr, 16); }

uint64_t bits_of(ValueType t, double v) {
  if (t == ValueType::F32) {
    const float f = float(v);
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
  }
  uint64_t b;
  std::memcpy(&b, &v, 8);
  return b;
}

// One scalar of the oracle (`want`, with optional `bits`) against element k of v
// (k < 0: the scalar itself).
void check_scalar(const std::string& key, ValueType t, const Value& v, int64_t k, const json& want, const json* bits) {
  INFO(key << " element " << k);
  const bool arr = k >= 0;
  switch (t) {
    case ValueType::U8: case ValueType::U16: case ValueType::U32: case ValueType::U64:
      CHECK((arr ? v.arr_u[k] : v.u) == want.get<uint64_t>());
      break;
    case ValueType::I8: case ValueType::I16: case ValueType::I32: case ValueType::I64:
      CHECK((arr ? v.arr_i[k] : v.i) == want.get<int64_t>());
      break;
    case ValueType::BOOL:
      CHECK((arr ? v.arr_u[k] : v.u) == (want.get<bool>() ? 1u : 0u));
      break;
    case ValueType::F32: case ValueType::F64:
      REQUIRE(bits != nullptr);
      CHECK(bits_of(t, arr ? v.arr_f[k] : v.f) == parse_hex(bits->get<std::string>()));
      break;
    case ValueType::STRING:
      CHECK((arr ? v.arr_s[k] : v.s) == want.get<std::string>());
      break;
    case ValueType::ARRAY: FAIL("nested array in a file the reader accepted"); break;
  }
}

std::vector<float> dequantize_tensor(const File& f, const fp::gguf::TensorInfo& t) {
  const auto bytes = f.bytes(t);
  std::vector<float> out(size_t(t.n_elements()));
  const int64_t rows = t.ne[1] * t.ne[2] * t.ne[3];
  const int64_t rb = fp::row_bytes(t.type, t.ne[0]);
  for (int64_t r = 0; r < rows; ++r)
    fp::dequantize_row(t.type, bytes.data() + r * rb, out.data() + r * t.ne[0], t.ne[0]);
  return out;
}

void check_against_expected(const std::string& stem) {
  const json e = load_json(stem + ".expected.json");
  const File f = File::open(data_path(stem + ".gguf"));
  CHECK(f.version() == e["version"].get<uint32_t>());
  CHECK(f.alignment() == e["alignment"].get<uint64_t>());
  CHECK(f.file_size() == e["file_size"].get<uint64_t>());
  CHECK(f.tensor_info_end() == e["tensor_info_end"].get<uint64_t>());
  if (!e["data_offset"].is_null()) CHECK(f.data_offset() == e["data_offset"].get<uint64_t>());
  CHECK(f.shard_count() == 1);
  CHECK_FALSE(f.header_only());

  REQUIRE(f.metadata().size() == e["n_kv"].get<size_t>());
  for (size_t i = 0; i < f.metadata().size(); ++i) {
    const json& m = e["metadata"][i];
    const auto& [key, v] = f.metadata()[i];
    const std::string want_key = m["key"];
    REQUIRE(key == want_key);
    CHECK(f.find(key) == &v);
    REQUIRE(uint32_t(v.type) == m["gguf_type_id"].get<uint32_t>());
    if (v.type == ValueType::ARRAY) {
      REQUIRE(uint32_t(v.item_type) == m["elem_gguf_type_id"].get<uint32_t>());
      REQUIRE(v.array_size() == m["count"].get<size_t>());
      for (size_t k = 0; k < v.array_size(); ++k)
        check_scalar(key, v.item_type, v, int64_t(k), m["value"][k], m.contains("bits") ? &m["bits"][k] : nullptr);
    } else {
      check_scalar(key, v.type, v, -1, m["value"], m.contains("bits") ? &m["bits"] : nullptr);
      if (v.type == ValueType::STRING) CHECK(v.s.size() == m["utf8_len"].get<size_t>());
    }
  }

  REQUIRE(f.tensors().size() == e["n_tensors"].get<size_t>());
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const json& w = e["tensors"][i];
    const auto& t = f.tensors()[i];
    INFO(t.name);
    CHECK(t.name == w["name"].get<std::string>());
    CHECK(uint32_t(t.type) == w["ggml_type_id"].get<uint32_t>());
    CHECK(std::string(fp::dtype_name(t.type)) == w["type"].get<std::string>());
    CHECK(t.n_dims == w["n_dims"].get<uint32_t>());
    for (uint32_t d = 0; d < 4; ++d) CHECK(t.ne[d] == (d < t.n_dims ? w["ne"][d].get<int64_t>() : 1));
    CHECK(t.n_elements() == w["n_elements"].get<int64_t>());
    CHECK(t.n_bytes == w["nbytes"].get<uint64_t>());
    CHECK(t.offset == w["offset"].get<uint64_t>());
    CHECK(t.file_offset == w["abs_offset"].get<uint64_t>());
    CHECK(f.tensor(t.name) == &t);
    CHECK(&f.require_tensor(t.name) == &t);
    const auto bytes = f.bytes(t);
    REQUIRE(bytes.size() == t.n_bytes);
    CHECK(fp::test::sha256_hex(bytes) == w["sha256"].get<std::string>());
    if (w.contains("dequant_f32_sha256")) {
      REQUIRE(fp::can_dequantize(t.type));
      const std::vector<float> x = dequantize_tensor(f, t);
      const std::span<const uint8_t> xb(reinterpret_cast<const uint8_t*>(x.data()), x.size() * 4);
      CHECK(fp::test::sha256_hex(xb) == w["dequant_f32_sha256"].get<std::string>());
      for (size_t k = 0; k < w["first8_f32_bits"].size(); ++k)
        CHECK(bits_of(ValueType::F32, x[k]) == parse_hex(w["first8_f32_bits"][k].get<std::string>()));
    }
    if (w.contains("first8_values")) {
      REQUIRE(t.type == fp::DType::I32);
      for (size_t k = 0; k < w["first8_values"].size(); ++k) {
        int32_t v;
        std::memcpy(&v, bytes.data() + 4 * k, 4);
        CHECK(v == w["first8_values"][k].get<int32_t>());
      }
    }
  }
}

}  // namespace

TEST_CASE("gguf: small.gguf reads exactly as small.expected.json says") { check_against_expected("small"); }
TEST_CASE("gguf: align64.gguf reads exactly as align64.expected.json says") { check_against_expected("align64"); }
TEST_CASE("gguf: no_tensors.gguf reads exactly as no_tensors.expected.json says") {
  check_against_expected("no_tensors");
  const File f = File::open(data_path("no_tensors.gguf"));
  CHECK(f.tensors().empty());
  CHECK_THROWS_WITH_AS(f.require_tensor("x"), doctest::Contains("has no tensors"), fp::Error);
}

TEST_CASE("gguf: nested_array.gguf is rejected naming the key and the nesting") {
  const json e = load_json("nested_array.expected.json");
  const std::string key = e["metadata"][1]["key"];
  CHECK(e["metadata"][1]["elem_gguf_type_id"].get<int>() == 9);
  try {
    File::open(data_path("nested_array.gguf"));
    FAIL("accepted a nested array");
  } catch (const fp::Error& err) {
    const std::string msg = err.what();
    CHECK(msg.find(key) != std::string::npos);
    CHECK(msg.find("nested array") != std::string::npos);
    CHECK(msg.find("nested_array.gguf") != std::string::npos);
  }
}

TEST_CASE("gguf: typed getters check kind and range, and name the file and key") {
  const File f = File::open(data_path("small.gguf"));
  CHECK(f.get_string("general.architecture") == "flashplan-test");
  CHECK(f.get_uint("general.quantization_version") == 2);
  CHECK(f.get_uint("test.u64") == std::numeric_limits<uint64_t>::max());
  CHECK(f.get_int("test.i64") == std::numeric_limits<int64_t>::min());
  CHECK(f.get_int("test.u32") == 4000000000);
  CHECK(f.get_uint("test.u8") == 200);
  CHECK(f.get_int("test.i8") == -100);
  CHECK(f.get_float("test.f32") == double(float(M_PI)));
  CHECK(f.get_float("test.u16") == 65000.0);
  CHECK(f.get_bool("test.bool_true"));
  CHECK_FALSE(f.get_bool("test.bool_false"));
  CHECK(f.get_string("test.str_empty").empty());
  CHECK(f.get_string_array("test.arr_str").size() == 5);
  CHECK(f.get_int_array("test.arr_i8") == std::vector<int64_t>{-128, -1, 0, 1, 127});
  CHECK(f.get_int_array("test.arr_u16") == std::vector<int64_t>{0, 1, 65535});
  CHECK(f.get_float_array("test.arr_f64")[1] == -1.5);

  CHECK_THROWS_WITH_AS(f.get_int("test.u64"), doctest::Contains("exceeds INT64_MAX"), fp::Error);
  CHECK_THROWS_WITH_AS(f.get_uint("test.i8"), doctest::Contains("negative"), fp::Error);
  CHECK_THROWS_WITH_AS(f.get_string("test.u8"), doctest::Contains("\"test.u8\": type uint8, expected string"), fp::Error);
  CHECK_THROWS_WITH_AS(f.get_bool("test.str"), doctest::Contains("expected bool"), fp::Error);
  CHECK_THROWS_WITH_AS(f.get_int_array("test.arr_u64"), doctest::Contains("exceeds INT64_MAX"), fp::Error);
  CHECK_THROWS_WITH_AS(f.get_string_array("test.arr_i8"), doctest::Contains("expected an array of strings"), fp::Error);
  CHECK_THROWS_WITH_AS(f.get_uint("no.such.key"), doctest::Contains("\"no.such.key\" not found ("), fp::Error);
  CHECK_THROWS_WITH_AS(f.get_uint("no.such.key"), doctest::Contains("small.gguf"), fp::Error);
}

TEST_CASE("gguf: require_tensor lists near names when a tensor is missing") {
  const File f = File::open(data_path("small.gguf"));
  CHECK(f.tensor("tensor.q8") == nullptr);
  try {
    f.require_tensor("tensor.q8");
    FAIL("found a missing tensor");
  } catch (const fp::Error& e) {
    const std::string msg = e.what();
    CHECK(msg.find("\"tensor.q8\" not found") != std::string::npos);
    CHECK(msg.find("\"tensor.q8_0\"") != std::string::npos);
    CHECK(msg.find("small.gguf") != std::string::npos);
  }
  CHECK(f.near_names("tensor.f33", 1) == std::vector<std::string>{"tensor.f32"});
}
