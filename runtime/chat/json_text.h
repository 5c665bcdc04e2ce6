// Raw-text JSON helpers for the chat template. Tool schemas and tool-call arguments
// are rendered from the caller's JSON text, keeping key order and number spelling as
// written (a parsed-and-dumped JSON value would reorder keys or respell 1.50 as 1.5);
// only whitespace outside strings is dropped. Inputs are validated with nlohmann
// first, so the scanners below only ever walk well-formed JSON.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fp::json_text {

bool is_valid(std::string_view text);

// `text` without whitespace outside strings. Precondition: valid JSON.
std::string minify(std::string_view text);

struct Member {
  std::string key;       // decoded
  std::string_view raw;  // the value's text, as written
  bool is_string;        // the value is a JSON string
};
// Members of a JSON object, in order; nullopt when `text` is not a valid JSON object.
std::optional<std::vector<Member>> object_members(std::string_view text);

// Items of a JSON array, in order; nullopt when `text` is not a valid JSON array.
std::optional<std::vector<std::string_view>> array_items(std::string_view text);

// The decoded value of a JSON string literal. Precondition: valid JSON string.
std::string decode_string(std::string_view raw);

// `s` as a JSON string literal (invalid UTF-8 replaced by U+FFFD).
std::string quote(std::string_view s);

}  // namespace fp::json_text
