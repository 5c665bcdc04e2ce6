// Vocabulary loading, special-token matching, encode and decode (see tokenizer.h).
#include "runtime/tokenizer/tokenizer.h"

#include <algorithm>
#include <unordered_set>

#include "ops/core/error.h"
#include "planner/gguf/gguf.h"
#include "runtime/tokenizer/byte_level.h"
#include "runtime/tokenizer/utf8.h"

namespace fp {
namespace {

// The bytes a byte-level token text stands for: each character of the alphabet gives
// its byte; any other character (or invalid UTF-8) is kept as it is.
std::string byte_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const size_t len = utf8::valid_sequence_length(text, i);
    if (len == 0) {
      out += text[i++];
      continue;
    }
    if (auto b = byte_level::byte_of(utf8::decode_at(text, i, len))) {
      out += static_cast<char>(*b);
    } else {
      out.append(text.substr(i, len));
    }
    i += len;
  }
  return out;
}

bool is_special(TokenType t) { return t == TokenType::Control || t == TokenType::UserDefined; }

}  // namespace

// ---- Construction ------------------------------------------------------------

Tokenizer Tokenizer::from_vocab(const Vocab& v) {
  Tokenizer t;
  t.source_ = v.source;
  const size_t n = v.tokens.size();
  if (n == 0) fail("tokenizer.ggml.tokens: empty, expected a vocabulary (", v.source, ")");
  if (n > size_t(INT32_MAX)) fail("tokenizer.ggml.tokens: ", n, " tokens, expected at most 2^31-1 (", v.source, ")");
  if (!v.token_types.empty() && v.token_types.size() != n) {
    fail("tokenizer.ggml.token_type: ", v.token_types.size(), " entries, expected ", n, " (one per token) (", v.source, ")");
  }
  t.pre_ = PreTokenizer::named(v.pre);

  std::unordered_map<std::string_view, int32_t> id_of;
  id_of.reserve(n);
  for (size_t i = 0; i < n; ++i) id_of.try_emplace(v.tokens[i], static_cast<int32_t>(i));

  t.byte_token_.resize(256);
  for (int b = 0; b < 256; ++b) {
    const std::string& text = byte_level::token_text(static_cast<uint8_t>(b));
    const auto it = id_of.find(text);
    if (it == id_of.end()) {
      fail("tokenizer.ggml.tokens: no token for byte 0x", std::hex, b, std::dec, " ('", text,
           "'), expected all 256 byte symbols of a byte-level BPE vocabulary (", v.source, ")");
    }
    t.byte_token_[b] = it->second;
  }

  std::vector<bool> produced(n, false);  // reachable by BPE: byte symbols and merge results
  for (int32_t id : t.byte_token_) produced[id] = true;
  std::string joined;
  for (size_t r = 0; r < v.merges.size(); ++r) {
    const std::string& m = v.merges[r];
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos || sp + 1 >= m.size()) {
      fail("tokenizer.ggml.merges[", r, "]: '", m, "', expected two tokens separated by a space (", v.source, ")");
    }
    const std::string_view left(m.data(), sp), right(m.data() + sp + 1, m.size() - sp - 1);
    joined.assign(left).append(right);
    const auto l = id_of.find(left), rr = id_of.find(right), res = id_of.find(joined);
    // A merge whose parts or result are not tokens can never fire; skip it.
    if (l == id_of.end() || rr == id_of.end() || res == id_of.end()) continue;
    t.merges_.add(l->second, rr->second, static_cast<int32_t>(r), res->second);
    produced[res->second] = true;
  }

  t.types_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    if (!v.token_types.empty()) {
      const int32_t ty = v.token_types[i];
      if (ty < 0 || ty > 6) fail("tokenizer.ggml.token_type[", i, "]: ", ty, ", expected 0..6 (", v.source, ")");
      t.types_[i] = static_cast<TokenType>(ty);
    } else {
      t.types_[i] = produced[i] ? TokenType::Normal : TokenType::Control;
    }
  }

  t.pieces_.resize(n);
  t.special_lengths_.resize(256);
  for (size_t i = 0; i < n; ++i) {
    const std::string& text = v.tokens[i];
    if (!is_special(t.types_[i])) {
      t.pieces_[i] = byte_decode(text);
      continue;
    }
    t.pieces_[i] = text;
    if (text.empty()) continue;
    if (t.specials_.try_emplace(text, Special{static_cast<int32_t>(i), t.types_[i] == TokenType::UserDefined}).second) {
      t.special_lengths_[static_cast<uint8_t>(text[0])].push_back(static_cast<uint32_t>(text.size()));
    }
  }
  for (auto& lens : t.special_lengths_) {
    std::sort(lens.begin(), lens.end(), std::greater<>());
    lens.erase(std::unique(lens.begin(), lens.end()), lens.end());
  }

  // An invalid input byte becomes its byte token when that token decodes to the byte,
  // else U+FFFD (see tokenizer.h).
  std::vector<int32_t> fffd_bytes;
  for (char c : std::string_view("\xEF\xBF\xBD")) fffd_bytes.push_back(t.byte_token_[static_cast<uint8_t>(c)]);
  t.merges_.apply(fffd_bytes, t.fffd_);
  t.invalid_byte_.resize(256);
  for (int b = 0; b < 256; ++b) {
    const int32_t id = t.byte_token_[b];
    t.invalid_byte_[b] = t.pieces_[id] == std::string(1, static_cast<char>(b)) ? id : -1;
  }

  const auto check_special_id = [&](int32_t id, const char* key) {
    if (id < -1 || id >= static_cast<int32_t>(n)) fail(key, ": ", id, ", expected a token id below ", n, " (", v.source, ")");
    return id;
  };
  t.bos_ = check_special_id(v.bos, "tokenizer.ggml.bos_token_id");
  t.eos_ = check_special_id(v.eos, "tokenizer.ggml.eos_token_id");
  return t;
}

Tokenizer Tokenizer::from_gguf(const gguf::File& f) {
  const std::string& model = f.get_string("tokenizer.ggml.model");
  if (model != "gpt2") {
    fail("tokenizer.ggml.model: '", model, "', expected 'gpt2' (byte-level BPE) (", f.path(), ")");
  }
  Vocab v;
  v.source = f.path();
  v.tokens = f.get_string_array("tokenizer.ggml.tokens");
  v.merges = f.get_string_array("tokenizer.ggml.merges");
  if (f.find("tokenizer.ggml.token_type")) {
    for (int64_t ty : f.get_int_array("tokenizer.ggml.token_type")) {
      if (ty < INT32_MIN || ty > INT32_MAX) fail("tokenizer.ggml.token_type: ", ty, ", expected 0..6 (", f.path(), ")");
      v.token_types.push_back(static_cast<int32_t>(ty));
    }
  }
  v.pre = f.get_string("tokenizer.ggml.pre");
  const auto id = [&](const char* key) -> int32_t {
    if (!f.find(key)) return -1;
    const int64_t x = f.get_int(key);
    if (x < 0 || x >= static_cast<int64_t>(v.tokens.size())) {
      fail(key, ": ", x, ", expected a token id below ", v.tokens.size(), " (", f.path(), ")");
    }
    return static_cast<int32_t>(x);
  };
  v.bos = id("tokenizer.ggml.bos_token_id");
  v.eos = id("tokenizer.ggml.eos_token_id");
  return from_vocab(v);
}

// ---- Encoding ----------------------------------------------------------------

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  size_t plain_start = 0, i = 0;
  while (i < text.size()) {
    bool matched = false;
    for (uint32_t len : special_lengths_[static_cast<uint8_t>(text[i])]) {
      if (len > text.size() - i) continue;
      const auto it = specials_.find(text.substr(i, len));
      if (it == specials_.end() || !(parse_special || it->second.always)) continue;
      encode_plain(text.substr(plain_start, i - plain_start), out);
      out.push_back(it->second.id);
      i += len;
      plain_start = i;
      matched = true;
      break;
    }
    if (!matched) ++i;
  }
  encode_plain(text.substr(plain_start), out);
  return out;
}

void Tokenizer::encode_plain(std::string_view text, std::vector<int32_t>& out) const {
  size_t i = 0;
  while (i < text.size()) {
    const size_t run = utf8::valid_run_length(text, i);
    encode_valid(text.substr(i, run), out);
    i += run;
    if (i == text.size()) break;
    const int32_t id = invalid_byte_[static_cast<uint8_t>(text[i++])];
    if (id >= 0) {
      out.push_back(id);
    } else {
      out.insert(out.end(), fffd_.begin(), fffd_.end());
    }
  }
}

void Tokenizer::encode_valid(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::vector<std::string_view> pieces;
  pre_.split(text, pieces);
  std::vector<int32_t> symbols;
  for (std::string_view p : pieces) {
    symbols.clear();
    for (char c : p) symbols.push_back(byte_token_[static_cast<uint8_t>(c)]);
    merges_.apply(symbols, out);
  }
}

// ---- Decoding ----------------------------------------------------------------

void Tokenizer::check_id(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= pieces_.size()) {
    fail("token id ", id, ": out of range, expected 0..", pieces_.size() - 1, " (", source_, ")");
  }
}

std::string Tokenizer::piece(int32_t id) const {
  check_id(id);
  return pieces_[id];
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  std::string out;
  for (int32_t id : ids) {
    check_id(id);
    out += pieces_[id];
  }
  return out;
}

TokenType Tokenizer::type(int32_t id) const {
  check_id(id);
  return types_[id];
}

std::optional<int32_t> Tokenizer::special(std::string_view text) const {
  const auto it = specials_.find(text);
  if (it == specials_.end()) return std::nullopt;
  return it->second.id;
}

}  // namespace fp
