// The GGUF reader on hand-built hostile and policy files (tests/data/gguf/hostile,
// policy; GGUF.md §8). Every hostile file must be rejected with one line that names
// the file, what is wrong, the value found and what was expected; the substrings
// below pin that meaning per file (expected.json's wording is a suggestion, its
// category the contract). Policy files are read as parse.cpp's header comment says.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "ops/core/error.h"
#include "planner/gguf/gguf.h"

using fp::gguf::File;
using nlohmann::json;

namespace {

std::string data_path(const std::string& rel) { return std::string(FLASHPLAN_TEST_DATA) + "/gguf/" + rel; }

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// What each hostile file's error must say (besides the file name).
const std::map<std::string, std::vector<std::string>> kHostile = {
    {"bad_magic.gguf", {"bad magic", "\"GGML\"", "expected \"GGUF\""}},
    {"truncated_header.gguf", {"truncated header", "12 bytes", "needs 24", "tensor count"}},
    {"version_0.gguf", {"version 0", "expected 2 or 3"}},
    {"version_1.gguf", {"version 1", "obsolete", "expected 2 or 3"}},
    {"version_4.gguf", {"version 4", "expected 2 or 3"}},
    {"version_big_endian.gguf", {"50331648", "byte-swapped 3", "big-endian"}},
    {"truncated_metadata.gguf", {"KV #1 \"test.description\"", "length 42", "10 bytes left", "truncated"}},
    {"string_len_beyond_file.gguf", {"KV #0", "key length 1000000", "offset 24", "192 bytes left"}},
    {"string_len_u64_max.gguf", {"KV #0", "key length 18446744073709551615", "192 bytes left"}},
    {"array_count_2p62.gguf", {"KV #1 \"test.arr\"", "4611686018427387904 uint32", "x 4 bytes", "left in the file"}},
    {"array_of_strings_count_huge.gguf", {"KV #1 \"tokenizer.ggml.tokens\"", "1099511627776 strings", "at least 8"}},
    {"tensor_count_huge.gguf", {"tensor count 1152921504606846976", "at least 24 bytes"}},
    {"kv_count_huge.gguf", {"KV count 18446744073709551615", "at least 14 bytes"}},
    {"tensor_offset_beyond_eof.gguf", {"tensor \"b\"", "[1099511627776, +32)", "beyond the data section (64 bytes)"}},
    {"tensor_data_truncated.gguf", {"tensor \"b\"", "[32, +32)", "beyond the data section (44 bytes)"}},
    {"tensor_overlap.gguf", {"\"a\" [0, 64)", "\"b\" [32, 64)", "overlap", "expected disjoint"}},
    {"tensor_overlap_same_offset.gguf", {"\"a\" and \"b\"", "[0, 32)", "both at offset 0", "expected disjoint"}},
    {"n_dims_9.gguf", {"tensor \"a\"", "n_dims 9", "maximum of 4"}},
    {"n_dims_5.gguf", {"tensor \"a\"", "n_dims 5", "maximum of 4"}},
    {"ne_overflow.gguf", {"tensor \"a\"", "element count 4294967296 x 4294967296", "overflows int64"}},
    {"ne_overflow_wraps_to_zero.gguf", {"tensor \"a\"", "element count 4294967296 x 4294967296", "overflows int64"}},
    {"tensor_size_pad_wrap.gguf", {"tensor \"b\"", "+18446744073709551600)", "beyond the data section (256 bytes)"}},
    {"ne_overflow_bytes.gguf", {"tensor \"a\"", "2305843009213693952 x 2", "overflows uint64"}},
    {"ne_negative.gguf", {"tensor \"a\"", "dimension 0 is 18446744073709551615", "(-1 as int64)", "INT64_MAX"}},
    {"unknown_type_999.gguf", {"tensor \"a\"", "unknown ggml type 999"}},
    {"removed_type_4.gguf", {"tensor \"a\"", "ggml type 4 (Q4_2)", "not supported"}},
    {"ne0_not_block_multiple.gguf", {"tensor \"a\"", "ne0 48", "Q8_0 block size 32"}},
    {"misaligned_offset.gguf", {"tensor \"b\"", "offset 48", "general.alignment (32)"}},
    {"duplicate_tensor_name.gguf", {"duplicate tensor name \"a\"", "#0 and #1"}},
    {"duplicate_kv_key.gguf", {"duplicate metadata key \"test.u32\"", "#1 and #2"}},
    {"empty_key.gguf", {"KV #1", "empty key", "expected a non-empty key"}},
    {"unknown_kv_type.gguf", {"KV #1 \"test.x\"", "unknown value type 13", "expected 0..12"}},
    {"array_elem_type_invalid.gguf", {"KV #1 \"test.arr\"", "unknown array element type 77"}},
    {"alignment_not_pow2.gguf", {"general.alignment 48", "not a power of two"}},
    {"alignment_zero.gguf", {"general.alignment 0", "not a power of two"}},
    {"alignment_wrong_type.gguf", {"general.alignment has type uint64", "expected uint32"}},
    {"tensor_name_too_long.gguf", {"tensor #0", "name length 65", "maximum of 64 bytes"}},
};

std::string open_error(const std::string& path) {
  try {
    File::open(path);
  } catch (const fp::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("gguf hostile: every file is rejected with a one-line error that says what, where and expected") {
  const json expected = json::parse(std::ifstream(data_path("hostile/expected.json")));
  std::set<std::string> listed;
  for (const json& row : expected) {
    const std::string file = row["file"];
    listed.insert(file);
    INFO(file);
    const std::string path = data_path("hostile/" + file);
    if (!row["must_reject"].get<bool>()) {
      CHECK(open_error(path).empty());
      continue;
    }
    const std::string msg = open_error(path);
    INFO(msg);
    REQUIRE_FALSE(msg.empty());
    CHECK(msg.find('\n') == std::string::npos);
    CHECK(msg.find(file) != std::string::npos);
    REQUIRE(kHostile.count(file) == 1);
    for (const std::string& part : kHostile.at(file)) CHECK_MESSAGE(msg.find(part) != std::string::npos, part);
    // The same bytes through the in-memory path give the same error.
    try {
      File::from_bytes(read_bytes(path), path);
      FAIL("from_bytes accepted it");
    } catch (const fp::Error& e) {
      CHECK(std::string(e.what()) == msg);
    }
  }
  // Nothing in the folder escapes the table, and the table names only real files.
  for (const auto& entry : std::filesystem::directory_iterator(data_path("hostile")))
    if (entry.path().extension() == ".gguf") CHECK_MESSAGE(listed.count(entry.path().filename().string()), entry.path());
  for (const auto& [file, parts] : kHostile) CHECK_MESSAGE(listed.count(file), file);
}

TEST_CASE("gguf hostile: valid_reference.gguf is read as described") {
  const File f = File::open(data_path("hostile/valid_reference.gguf"));
  CHECK(f.metadata().size() == 2);
  CHECK(f.get_string("general.architecture") == "hostile");
  CHECK(f.get_uint("test.u32") == 7);
  CHECK(f.alignment() == 32);
  CHECK(f.data_offset() == 192);
  REQUIRE(f.tensors().size() == 2);
  for (int t = 0; t < 2; ++t) {
    const auto bytes = f.bytes(f.tensors()[t]);
    REQUIRE(bytes.size() == 32);
    for (int k = 0; k < 8; ++k) {
      float v;
      std::memcpy(&v, bytes.data() + 4 * k, 4);
      CHECK(v == float(100 * t + k));
    }
  }
}

TEST_CASE("gguf hostile: every truncation of small.gguf is rejected until the last tensor's bytes are whole") {
  const std::vector<uint8_t> all = read_bytes(data_path("small.gguf"));
  const File whole = File::from_bytes(all, "small.gguf");
  const auto& last = whole.tensors().back();
  const uint64_t needed = last.file_offset + last.n_bytes;  // trailing padding is optional
  REQUIRE(needed < all.size());
  for (size_t n = 0; n <= all.size(); ++n) {
    std::vector<uint8_t> cut(all.begin(), all.begin() + n);
    bool ok = true;
    try {
      File::from_bytes(std::move(cut), "cut.gguf");
    } catch (const fp::Error&) {
      ok = false;
    }
    if (ok != (n >= needed)) FAIL_CHECK("prefix of " << n << " bytes: " << (ok ? "accepted" : "rejected"));
  }
}

TEST_CASE("gguf policy: spec-valid files ggml rejects are accepted; out-of-range bools are rejected") {
  const json policy = json::parse(std::ifstream(data_path("policy/policy.json")));
  std::set<std::string> files;
  for (const json& row : policy) files.insert(row["file"].get<std::string>());
  const std::set<std::string> tested = {"out_of_order.gguf",   "tensor_gap.gguf",   "no_trailing_padding.gguf",
                                        "tensor_name_64.gguf", "alignment_8.gguf",  "alignment_4.gguf",
                                        "zero_element_tensor.gguf", "bool_value_2.gguf"};
  CHECK(files == tested);

  auto open = [](const std::string& f) { return File::open(data_path("policy/" + f)); };
  {
    const File f = open("out_of_order.gguf");
    REQUIRE(f.tensors().size() == 2);
    CHECK(f.tensors()[0].name == "b");
    CHECK(f.tensors()[0].offset == 32);
    CHECK(f.tensors()[1].offset == 0);
  }
  {
    const File f = open("tensor_gap.gguf");
    CHECK(f.require_tensor("b").offset == 64);
    CHECK(f.bytes(f.require_tensor("b")).size() == f.require_tensor("b").n_bytes);
  }
  {
    const File f = open("no_trailing_padding.gguf");
    const auto& b = f.require_tensor("b");
    CHECK(b.file_offset + b.n_bytes == f.file_size());
  }
  {
    const File f = open("tensor_name_64.gguf");
    bool found = false;
    for (const auto& t : f.tensors()) found |= t.name.size() == 64;
    CHECK(found);
  }
  CHECK(open("alignment_8.gguf").alignment() == 8);
  CHECK(open("alignment_8.gguf").require_tensor("b").offset == 8);
  CHECK(open("alignment_4.gguf").alignment() == 4);  // power of two: accepted like ggml and gguf-py
  {
    const File f = open("zero_element_tensor.gguf");
    const auto& a = f.require_tensor("a");
    CHECK(a.n_elements() == 0);
    CHECK(a.n_bytes == 0);
    CHECK(f.bytes(a).empty());
    CHECK(f.require_tensor("b").offset == 0);
  }
  const std::string msg = open_error(data_path("policy/bool_value_2.gguf"));
  CHECK(msg.find("KV #1 \"test.flag\": bool byte 2") != std::string::npos);
  CHECK(msg.find("expected 0 or 1") != std::string::npos);
  CHECK(msg.find("bool_value_2.gguf") != std::string::npos);
}

TEST_CASE("gguf: files that are not there or not files give clear errors") {
  CHECK_THROWS_WITH_AS(File::open(data_path("no-such-file.gguf")), doctest::Contains("cannot open"), fp::Error);
  CHECK_THROWS_WITH_AS(File::open(data_path("hostile")), doctest::Contains("not a regular file"), fp::Error);
  CHECK_THROWS_WITH_AS(File::from_bytes({}, "empty.gguf"), doctest::Contains("truncated header: file has 0 bytes"),
                       fp::Error);
}
