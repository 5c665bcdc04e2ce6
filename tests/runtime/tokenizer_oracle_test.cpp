// The tokenizer against llama.cpp's vocabulary oracles (tests/data/tokenizer, see
// tests/data/README.md): every test string of the three vocabularies must give
// exactly the ids of its .out line, and decode back to itself.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "planner/gguf/gguf.h"
#include "runtime/tokenizer/tokenizer.h"

namespace {

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE_MESSAGE(f.good(), "cannot open ", path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// .inp: each test string is followed by "\n__ggml_vocab_test__\n".
std::vector<std::string> read_inputs(const std::string& path) {
  const std::string all = read_all(path);
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t pos; (pos = all.find(sep, start)) != std::string::npos; start = pos + sep.size()) {
    out.push_back(all.substr(start, pos - start));
  }
  REQUIRE(start == all.size());
  return out;
}

// .out: one line of space-separated ids per test string.
std::vector<std::vector<int32_t>> read_outputs(const std::string& path) {
  std::istringstream in(read_all(path));
  std::vector<std::vector<int32_t>> out;
  for (std::string line; std::getline(in, line);) {
    std::istringstream ls(line);
    std::vector<int32_t> ids;
    for (int32_t id; ls >> id;) ids.push_back(id);
    out.push_back(ids);
  }
  return out;
}

void check_vocab(const std::string& name, const std::string& expected_pre) {
  const std::string base = std::string(FLASHPLAN_TEST_DATA) + "/tokenizer/ggml-vocab-" + name + ".gguf";
  const auto file = fp::gguf::File::open(base);
  const auto tok = fp::Tokenizer::from_gguf(file);
  CHECK(tok.pre_name() == expected_pre);
  const auto inputs = read_inputs(base + ".inp");
  const auto expected = read_outputs(base + ".out");
  REQUIRE(inputs.size() == expected.size());
  REQUIRE(inputs.size() >= 40);
  for (size_t i = 0; i < inputs.size(); ++i) {
    CAPTURE(i);
    CAPTURE(inputs[i]);
    const auto ids = tok.encode(inputs[i], /*parse_special=*/false);
    CHECK(ids == expected[i]);
    CHECK(tok.decode(ids) == inputs[i]);
  }
}

}  // namespace

TEST_CASE("tokenizer oracle: deepseek-llm") { check_vocab("deepseek-llm", "deepseek-llm"); }
TEST_CASE("tokenizer oracle: deepseek-coder") { check_vocab("deepseek-coder", "deepseek-coder"); }
TEST_CASE("tokenizer oracle: gpt-2") { check_vocab("gpt-2", "gpt-2"); }
