// The GPT-2 byte-level alphabet: every byte 0..255 is written as one printable code
// point so that a BPE vocabulary can be stored as text. Printable Latin-1 bytes
// ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF) stand for themselves; the other 68 bytes
// take U+0100, U+0101, ... in byte order (space 0x20 becomes U+0120 'Ġ').
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>

namespace fp::byte_level {

// Code point that represents byte b.
uint32_t code_point(uint8_t b);

// The byte a code point represents, if it belongs to the alphabet.
std::optional<uint8_t> byte_of(uint32_t cp);

// UTF-8 text of the one-character token for byte b (e.g. 0x20 -> "Ġ").
const std::string& token_text(uint8_t b);

}  // namespace fp::byte_level
