// Tables for the GPT-2 byte-level alphabet (see byte_level.h), built once.
#include "runtime/tokenizer/byte_level.h"

#include "runtime/tokenizer/utf8.h"

namespace fp::byte_level {
namespace {

bool stands_for_itself(uint32_t b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct Tables {
  std::array<uint32_t, 256> cp{};
  std::array<int16_t, 512> byte{};  // indexed by code point; every alphabet cp < 0x144
  std::array<std::string, 256> text;
  Tables() {
    byte.fill(-1);
    uint32_t next = 0x100;
    for (uint32_t b = 0; b < 256; ++b) {
      cp[b] = stands_for_itself(b) ? b : next++;
      byte[cp[b]] = static_cast<int16_t>(b);
      utf8::append(text[b], cp[b]);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

uint32_t code_point(uint8_t b) { return tables().cp[b]; }

std::optional<uint8_t> byte_of(uint32_t cp) {
  if (cp >= tables().byte.size() || tables().byte[cp] < 0) return std::nullopt;
  return static_cast<uint8_t>(tables().byte[cp]);
}

const std::string& token_text(uint8_t b) { return tables().text[b]; }

}  // namespace fp::byte_level
