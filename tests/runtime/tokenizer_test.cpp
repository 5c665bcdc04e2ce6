// Tokenizer unit tests: the byte-level alphabet, UTF-8 validation, merge order,
// special-token matching, invalid input, round trips on random bytes, and the errors
// a bad vocabulary gets.
#include <doctest/doctest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

#include "ops/core/error.h"
#include "planner/gguf/gguf.h"
#include "runtime/tokenizer/byte_level.h"
#include "runtime/tokenizer/pretokenizer.h"
#include "runtime/tokenizer/tokenizer.h"
#include "tests/support/error_of.h"
#include "runtime/tokenizer/utf8.h"

namespace {

// 256 byte symbols first (id = byte), then `extra` tokens.
fp::Vocab byte_vocab(std::vector<std::string> extra = {}, std::vector<std::string> merges = {}) {
  fp::Vocab v;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(fp::byte_level::token_text(static_cast<uint8_t>(b)));
  for (auto& e : extra) v.tokens.push_back(e);
  v.merges = std::move(merges);
  v.pre = "gpt-2";
  return v;
}

int32_t id_of(const fp::Vocab& v, const std::string& text) {
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    if (v.tokens[i] == text) return static_cast<int32_t>(i);
  }
  FAIL("no token ", text);
  return -1;
}

}  // namespace

using fp::test::error_of;

TEST_CASE("byte-level alphabet: 256 distinct printable code points, GPT-2 layout") {
  std::set<uint32_t> seen;
  for (int b = 0; b < 256; ++b) {
    const uint32_t cp = fp::byte_level::code_point(static_cast<uint8_t>(b));
    seen.insert(cp);
    REQUIRE(fp::byte_level::byte_of(cp) == static_cast<uint8_t>(b));
  }
  CHECK(seen.size() == 256);
  CHECK(fp::byte_level::code_point('A') == 'A');
  CHECK(fp::byte_level::code_point(0xE9) == 0xE9);
  CHECK(fp::byte_level::code_point(0x00) == 0x100);
  CHECK(fp::byte_level::code_point(' ') == 0x120);  // 'Ġ'
  CHECK(fp::byte_level::code_point('\n') == 0x10A);  // 'Ċ'
  CHECK(fp::byte_level::code_point(0xAD) == 0x143);  // the last one
  CHECK(fp::byte_level::token_text(' ') == "\xC4\xA0");
  CHECK_FALSE(fp::byte_level::byte_of(0x144).has_value());
  CHECK_FALSE(fp::byte_level::byte_of(0x4E00).has_value());
}

TEST_CASE("utf8: strict validation") {
  using fp::utf8::is_valid;
  CHECK(is_valid(""));
  CHECK(is_valid("abc \xC3\xA9 \xE4\xB8\x80 \xF0\x9F\x98\x80"));
  CHECK(is_valid("\xF4\x8F\xBF\xBF"));  // U+10FFFF
  CHECK_FALSE(is_valid("\x80"));          // stray continuation
  CHECK_FALSE(is_valid("\xC0\xAF"));      // overlong '/'
  CHECK_FALSE(is_valid("\xE0\x80\xAF"));  // overlong
  CHECK_FALSE(is_valid("\xED\xA0\x80"));  // surrogate U+D800
  CHECK_FALSE(is_valid("\xF4\x90\x80\x80"));  // above U+10FFFF
  CHECK_FALSE(is_valid("\xF5\x80\x80\x80"));
  CHECK_FALSE(is_valid("\xE4\xB8"));      // truncated
  CHECK_FALSE(is_valid("\xFF"));
  CHECK(fp::utf8::valid_run_length("ab\xFF" "cd", 0) == 2);
  std::string s;
  fp::utf8::append(s, 0x1F600);
  CHECK(s == "\xF0\x9F\x98\x80");
  CHECK(fp::utf8::decode_at(s, 0, 4) == 0x1F600);
}

TEST_CASE("bpe: lowest rank merges first, leftmost among equal ranks") {
  // "a a" is rank 0; "aaa" must become [aa, a], not [a, aa].
  auto v = byte_vocab({"aa", "bc", "abc"}, {"a a", "b c", "a bc"});
  auto tok = fp::Tokenizer::from_vocab(v);
  CHECK(tok.encode("aaa") == std::vector<int32_t>{id_of(v, "aa"), 'a'});
  CHECK(tok.encode("aaaa") == std::vector<int32_t>{id_of(v, "aa"), id_of(v, "aa")});
  // "b c" (rank 1) fires before "a bc" (rank 2) can: abc -> a + bc -> abc.
  CHECK(tok.encode("abc") == std::vector<int32_t>{id_of(v, "abc")});

  // Order matters: with "a b" ranked before "b c", "abc" becomes [ab, c].
  auto v2 = byte_vocab({"ab", "bc"}, {"a b", "b c"});
  auto tok2 = fp::Tokenizer::from_vocab(v2);
  CHECK(tok2.encode("abc") == std::vector<int32_t>{id_of(v2, "ab"), 'c'});
  auto v3 = byte_vocab({"ab", "bc"}, {"b c", "a b"});
  auto tok3 = fp::Tokenizer::from_vocab(v3);
  CHECK(tok3.encode("abc") == std::vector<int32_t>{'a', id_of(v3, "bc")});
}

TEST_CASE("bpe: merges work on byte-level symbols (space is 'Ġ')") {
  auto v = byte_vocab({"\xC4\xA0h", "\xC4\xA0hi"}, {"\xC4\xA0 h", "\xC4\xA0h i"});
  auto tok = fp::Tokenizer::from_vocab(v);
  CHECK(tok.encode(" hi") == std::vector<int32_t>{id_of(v, "\xC4\xA0hi")});
  CHECK(tok.decode(tok.encode(" hi")) == " hi");
  CHECK(tok.piece(id_of(v, "\xC4\xA0h")) == " h");
}

TEST_CASE("special tokens: control only with parse_special, user-defined always, longest first") {
  auto v = byte_vocab({"<s>", "<u>", "<u>x", "<s"});
  v.token_types.assign(v.tokens.size(), 1);
  v.token_types[id_of(v, "<s>")] = 3;   // CONTROL
  v.token_types[id_of(v, "<u>")] = 4;   // USER_DEFINED
  v.token_types[id_of(v, "<u>x")] = 4;  // USER_DEFINED, longer, same start
  v.bos = id_of(v, "<s>");
  auto tok = fp::Tokenizer::from_vocab(v);
  const int32_t s = id_of(v, "<s>"), u = id_of(v, "<u>"), ux = id_of(v, "<u>x");

  CHECK(tok.encode("a<s>b") == std::vector<int32_t>{'a', s, 'b'});
  CHECK(tok.encode("a<s>b", false) == std::vector<int32_t>{'a', '<', 's', '>', 'b'});
  CHECK(tok.encode("<u>y", false) == std::vector<int32_t>{u, 'y'});
  CHECK(tok.encode("<u>xy") == std::vector<int32_t>{ux, 'y'});
  CHECK(tok.encode("<s<s>") == std::vector<int32_t>{'<', 's', s});  // "<s" is NORMAL: BPE'd
  CHECK(tok.special("<s>") == s);
  CHECK(tok.special("<u>x") == ux);
  CHECK_FALSE(tok.special("<s").has_value());
  CHECK(tok.bos() == s);
  CHECK(tok.eos() == -1);
  CHECK(tok.decode(tok.encode("x<s><u>x<u>")) == "x<s><u>x<u>");
  CHECK(tok.piece(s) == "<s>");
}

TEST_CASE("special tokens: derived from the merges when token_type is absent") {
  auto v = byte_vocab({"ab", "<｜User｜>", "<think>"}, {"a b"});
  auto tok = fp::Tokenizer::from_vocab(v);
  CHECK(tok.type(id_of(v, "ab")) == fp::TokenType::Normal);
  CHECK(tok.type('a') == fp::TokenType::Normal);
  CHECK(tok.type(id_of(v, "<think>")) == fp::TokenType::Control);
  CHECK(tok.encode("<｜User｜>ab<think>") ==
        std::vector<int32_t>{id_of(v, "<｜User｜>"), id_of(v, "ab"), id_of(v, "<think>")});
}

TEST_CASE("invalid UTF-8: each bad byte becomes its byte token, and the text round-trips") {
  auto v = byte_vocab({"ab"}, {"a b"});
  auto tok = fp::Tokenizer::from_vocab(v);
  const std::string s = "ab\xFF" "ab\xE4\xB8" "\xC0\xAF\xED\xA0\x80";
  const auto ids = tok.encode(s);
  CHECK(ids == std::vector<int32_t>{id_of(v, "ab"), 0xFF, id_of(v, "ab"), 0xE4, 0xB8, 0xC0, 0xAF, 0xED, 0xA0, 0x80});
  CHECK(tok.decode(ids) == s);
}

TEST_CASE("bad vocabularies and ids fail with a message naming the key") {
  auto v = byte_vocab();
  v.pre = "llama-bpe-nonexistent";
  CHECK(error_of([&] { fp::Tokenizer::from_vocab(v); }).find("unknown pre-tokenizer 'llama-bpe-nonexistent'") !=
        std::string::npos);
  CHECK(error_of([&] { fp::PreTokenizer::named("x"); }).find("joyai-llm") != std::string::npos);

  auto missing = byte_vocab();
  missing.tokens[0x41] = "A-renamed";
  CHECK(error_of([&] { fp::Tokenizer::from_vocab(missing); }).find("no token for byte 0x41") != std::string::npos);

  auto bad_merge = byte_vocab({}, {"ab"});
  CHECK(error_of([&] { fp::Tokenizer::from_vocab(bad_merge); }).find("tokenizer.ggml.merges[0]") != std::string::npos);

  auto bad_types = byte_vocab();
  bad_types.token_types = {1, 1};
  CHECK(error_of([&] { fp::Tokenizer::from_vocab(bad_types); }).find("token_type: 2 entries, expected 256") !=
        std::string::npos);

  auto bad_bos = byte_vocab();
  bad_bos.bos = 256;
  CHECK(error_of([&] { fp::Tokenizer::from_vocab(bad_bos); }).find("bos_token_id: 256") != std::string::npos);

  auto tok = fp::Tokenizer::from_vocab(byte_vocab());
  const std::vector<int32_t> bad{1, 256};
  CHECK(error_of([&] { tok.decode(bad); }).find("token id 256: out of range") != std::string::npos);
  CHECK(error_of([&] { tok.piece(-1); }).find("token id -1") != std::string::npos);
}

TEST_CASE("round trip: random bytes and random UTF-8 through every pre-tokenizer") {
  const auto file = fp::gguf::File::open(std::string(FLASHPLAN_TEST_DATA) + "/tokenizer/ggml-vocab-deepseek-llm.gguf");
  const auto base = fp::Tokenizer::from_gguf(file);
  std::mt19937 rng(1234);
  // Code points from several scripts, whitespace, and a special token's text.
  const std::vector<uint32_t> cps = {'a', 'Z', '0', '7', ' ', '\n', '\t', '\r', '!', '\'', 0xA0, 0x3000, 0x85, 0xE9,
                                     0x4E00, 0x9FA5, 0x3042, 0x30A2, 0xAC00, 0x0416, 0x05D0, 0x0627, 0x0E01,
                                     0x1F600, 0x1F3FB, 0x200D, 0x0301, 0xFF01, 0x2028, 0x180E, 0xF8};
  for (const std::string pre : {"joyai-llm", "deepseek-llm", "deepseek-coder", "gpt-2"}) {
    fp::Vocab v;
    v.tokens = file.get_string_array("tokenizer.ggml.tokens");
    v.merges = file.get_string_array("tokenizer.ggml.merges");
    for (int64_t t : file.get_int_array("tokenizer.ggml.token_type")) v.token_types.push_back(static_cast<int32_t>(t));
    v.pre = pre;
    const auto tok = fp::Tokenizer::from_vocab(v);
    for (int iter = 0; iter < 300; ++iter) {
      std::string s;
      const int len = static_cast<int>(rng() % 40);
      if (iter % 2 == 0) {
        // Bytes C0, C1, F5..FF have no NORMAL token in this vocabulary (they become
        // U+FFFD, tested below); every other byte must come back.
        while (static_cast<int>(s.size()) < len) {
          const uint8_t b = rng() & 0xFF;
          if (b != 0xC0 && b != 0xC1 && b < 0xF5) s += static_cast<char>(b);
        }
      } else {
        for (int k = 0; k < len; ++k) fp::utf8::append(s, cps[rng() % cps.size()]);
        if (iter % 10 == 1) s += "<｜begin▁of▁sentence｜>";
      }
      CAPTURE(pre);
      CAPTURE(s);
      for (bool special : {true, false}) REQUIRE(tok.decode(tok.encode(s, special)) == s);
    }
  }
  CHECK(base.size() == 102400);
  // 0xF9's one-character token "ù" is USER_DEFINED here: a lone 0xF9 becomes U+FFFD,
  // while the text "ù" itself still matches that token.
  const auto fffd = base.encode("\xEF\xBF\xBD");
  CHECK(base.encode("\xF9") == fffd);
  CHECK(base.decode(base.encode("a\xF9" "b")) == "a\xEF\xBF\xBD" "b");
  REQUIRE(base.special("ù").has_value());
  CHECK(base.encode("ù") == std::vector<int32_t>{*base.special("ù")});
}
