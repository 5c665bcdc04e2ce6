// UTF-8 helpers for the tokenizer: strict validation (RFC 3629: no overlongs, no
// surrogates, nothing above U+10FFFF — the same rule PCRE2's UTF mode applies, so a
// run that passes here can be matched with PCRE2_NO_UTF_CHECK), and code point
// encode/decode for the byte-level alphabet.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace fp::utf8 {

// Length of the valid UTF-8 sequence starting at s[i], or 0 when the bytes there do
// not start a valid sequence (truncated, overlong, surrogate, out of range, stray
// continuation byte).
size_t valid_sequence_length(std::string_view s, size_t i);

// Length of the longest valid UTF-8 prefix of s[i..].
size_t valid_run_length(std::string_view s, size_t i);

bool is_valid(std::string_view s);

// Decode the code point of a sequence already known to be valid.
uint32_t decode_at(std::string_view s, size_t i, size_t len);

void append(std::string& out, uint32_t cp);

}  // namespace fp::utf8
