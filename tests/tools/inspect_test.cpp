// `flashplan inspect` and `flashplan dequant`, run as the built binary: inspect --json
// on gguf-py's small.gguf against small.expected.json, text vs JSON for long arrays,
// dequant output against the oracle's dequantisation sha256, and every error path
// (non-zero exit, exactly one line on stderr).
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <filesystem>
#include <map>
#include <fstream>
#include <nlohmann/json.hpp>

#include "planner/gguf/gguf.h"
#include "tests/support/cli.h"
#include "tests/support/sha256.h"

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string data_path(const std::string& rel) { return std::string(FLASHPLAN_TEST_DATA) + "/gguf/" + rel; }

using fp::test::Run;
using fp::test::TempDir;
using fp::test::slurp;
Run flashplan(const std::vector<std::string>& args) { return fp::test::run_flashplan(args); }

void check_one_line_error(const Run& r, const std::string& must_contain) {
  INFO(r.err);
  CHECK(r.status != 0);
  CHECK(r.status < 128);  // an exit, not a signal
  REQUIRE_FALSE(r.err.empty());
  CHECK(r.err.back() == '\n');
  CHECK(r.err.find('\n') == r.err.size() - 1);
  CHECK(r.err.find(must_contain) != std::string::npos);
  CHECK(r.out.empty());
}

// The oracle's type names ("u8", "str", "arr") in inspect's spelling.
std::string type_name(const std::string& oracle) {
  static const std::map<std::string, std::string> names = {
      {"u8", "uint8"},   {"i8", "int8"},       {"u16", "uint16"},  {"i16", "int16"}, {"u32", "uint32"},
      {"i32", "int32"},  {"u64", "uint64"},    {"i64", "int64"},   {"f32", "float32"}, {"f64", "float64"},
      {"bool", "bool"},  {"str", "string"},    {"arr", "array"}};
  return names.at(oracle);
}

}  // namespace

TEST_CASE("inspect --json on small.gguf matches small.expected.json") {
  const Run r = flashplan({"inspect", data_path("small.gguf"), "--json"});
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.err.empty());
  const nlohmann::ordered_json got = nlohmann::ordered_json::parse(r.out);  // keeps file order
  const json want = json::parse(slurp(data_path("small.expected.json")));

  CHECK(got.size() == 5);
  CHECK(got["format"] == "gguf");
  CHECK(got["version"] == 3);
  CHECK(got["alignment"].get<uint64_t>() == want["alignment"].get<uint64_t>());

  REQUIRE(got["metadata"].size() == want["metadata"].size());
  for (const json& m : want["metadata"]) {
    const std::string key = m["key"];
    INFO(key);
    REQUIRE(got["metadata"].contains(key));
    const auto& g = got["metadata"][key];
    CHECK(g["type"].get<std::string>() == type_name(m["type"]));
    if (m["type"] == "arr") {
      CHECK(g.size() == 3);
      CHECK(g["item_type"].get<std::string>() == type_name(m["elem_type"]));
      REQUIRE(g["value"].size() == m["count"].get<size_t>());
    } else {
      CHECK(g.size() == 2);
    }
    // Floats: the decimal the oracle wrote names the same double; everything else as is.
    if (m["type"] == "f32" || m["type"] == "f64" || m.value("elem_type", "") == "f32" || m.value("elem_type", "") == "f64") {
      const auto& gv = g["value"];
      const json& wv = m["value"];
      if (gv.is_array()) {
        for (size_t k = 0; k < wv.size(); ++k) CHECK(gv[k].get<double>() == wv[k].get<double>());
      } else {
        CHECK(gv.get<double>() == wv.get<double>());
        CHECK(std::signbit(gv.get<double>()) == std::signbit(wv.get<double>()));
      }
    } else {
      CHECK(json::parse(g["value"].dump()) == m["value"]);
    }
  }
  // Metadata keys appear in file order.
  size_t k = 0;
  for (auto it = got["metadata"].begin(); it != got["metadata"].end(); ++it, ++k)
    CHECK(it.key() == want["metadata"][k]["key"].get<std::string>());

  REQUIRE(got["tensors"].size() == want["tensors"].size());
  for (size_t i = 0; i < want["tensors"].size(); ++i) {
    const auto& g = got["tensors"][i];
    const json& w = want["tensors"][i];
    CHECK(g.size() == 5);
    CHECK(g["name"].get<std::string>() == w["name"].get<std::string>());
    CHECK(g["type"].get<std::string>() == w["type"].get<std::string>());
    CHECK(g["ne"].get<std::vector<int64_t>>() == w["ne"].get<std::vector<int64_t>>());
    CHECK(g["offset"].get<uint64_t>() == w["offset"].get<uint64_t>());
    CHECK(g["bytes"].get<uint64_t>() == w["nbytes"].get<uint64_t>());
  }
}

TEST_CASE("inspect: text shortens long arrays and strings, --json prints them whole") {
  TempDir dir;
  fp::gguf::Writer w;
  w.add("general.architecture", fp::gguf::Value::make_string("long"));
  std::vector<std::string> vocab;
  for (int k = 0; k < 1000; ++k) vocab.push_back("tok" + std::to_string(k));
  w.add("tokenizer.ggml.tokens", fp::gguf::Value::make_array_string(vocab));
  w.add("tokenizer.chat_template", fp::gguf::Value::make_string(std::string(500, 'x') + "END"));
  w.add_tensor("w", fp::DType::F32, {4});
  w.write(dir / "long.gguf", [](size_t, std::span<uint8_t> dst) { std::fill(dst.begin(), dst.end(), 0); });

  const Run text = flashplan({"inspect", dir / "long.gguf"});
  REQUIRE(text.status == 0);
  CHECK(text.out.find("tok7") != std::string::npos);
  CHECK(text.out.find("tok999") == std::string::npos);
  CHECK(text.out.find("(992 more)") != std::string::npos);
  CHECK(text.out.find("END") == std::string::npos);
  CHECK(text.out.find("(503 bytes)") != std::string::npos);
  CHECK(text.out.find("[string x 1000]") != std::string::npos);

  const Run js = flashplan({"inspect", dir / "long.gguf", "--json"});
  REQUIRE(js.status == 0);
  const json got = json::parse(js.out);
  CHECK(got["metadata"]["tokenizer.ggml.tokens"]["value"].size() == 1000);
  CHECK(got["metadata"]["tokenizer.ggml.tokens"]["value"][999] == "tok999");
  CHECK(got["metadata"]["tokenizer.chat_template"]["value"].get<std::string>().size() == 503);
}

TEST_CASE("inspect: header-only GGUFs are shown") {
  TempDir dir;
  fp::gguf::Writer w;
  w.add("general.architecture", fp::gguf::Value::make_string("h"));
  w.add_tensor("w", fp::DType::Q8_0, {64, 2});
  w.write(dir / "h.gguf", [](size_t, std::span<uint8_t>) {}, true);
  const Run r = flashplan({"inspect", dir / "h.gguf"});
  REQUIRE(r.status == 0);
  CHECK(r.out.find("header only") != std::string::npos);
  CHECK(r.out.find("Q8_0") != std::string::npos);
}

TEST_CASE("inspect: errors exit non-zero with one line on stderr") {
  check_one_line_error(flashplan({"inspect", data_path("hostile/tensor_overlap.gguf")}), "overlap");
  check_one_line_error(flashplan({"inspect", data_path("hostile/bad_magic.gguf"), "--json"}), "bad magic");
  check_one_line_error(flashplan({"inspect", data_path("small.expected.json")}), "not a kind of file inspect knows");
  check_one_line_error(flashplan({"inspect", data_path("missing.gguf")}), "cannot open");
}

TEST_CASE("dequant writes float32 LE in GGUF element order, bit-exact with the oracle") {
  TempDir dir;
  const json want = json::parse(slurp(data_path("small.expected.json")));
  int checked = 0;
  for (const json& t : want["tensors"]) {
    if (!t.contains("dequant_f32_sha256")) continue;
    const std::string out = dir / "t.f32";
    const Run r = flashplan({"dequant", data_path("small.gguf"), t["name"], "-o", out});
    INFO(t["name"] << ": " << r.err);
    REQUIRE(r.status == 0);
    const std::string bytes = slurp(out);
    CHECK(bytes.size() == 4 * t["n_elements"].get<size_t>());
    const std::span<const uint8_t> b(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    CHECK(fp::test::sha256_hex(b) == t["dequant_f32_sha256"].get<std::string>());
    ++checked;
  }
  CHECK(checked == 7);
}

TEST_CASE("dequant: errors exit non-zero with one line on stderr and leave no output") {
  TempDir dir;
  const std::string out = dir / "o.f32";
  const Run r = flashplan({"dequant", data_path("small.gguf"), "tensor.q8", "-o", out});
  check_one_line_error(r, "\"tensor.q8\" not found");
  CHECK(r.err.find("\"tensor.q8_0\"") != std::string::npos);
  check_one_line_error(flashplan({"dequant", data_path("small.gguf"), "tensor.i32", "-o", out}),
                       "type I32 cannot be dequantised");
  check_one_line_error(flashplan({"dequant", data_path("hostile/ne_negative.gguf"), "a", "-o", out}), "dimension 0");
  check_one_line_error(flashplan({"dequant", data_path("small.gguf"), "tensor.f32", "-o", dir / "no/dir/o.f32"}),
                       "cannot create");
  CHECK_FALSE(fs::exists(out));
  const Run usage = flashplan({"dequant", data_path("small.gguf")});
  CHECK(usage.status != 0);
}
