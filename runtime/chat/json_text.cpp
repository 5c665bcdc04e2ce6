// Raw-text JSON scanning (see json_text.h).
#include "runtime/chat/json_text.h"

#include <nlohmann/json.hpp>

namespace fp::json_text {
namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

size_t skip_ws(std::string_view s, size_t i) {
  while (i < s.size() && is_ws(s[i])) ++i;
  return i;
}

// End of the string literal starting at s[i] == '"'.
size_t skip_string(std::string_view s, size_t i) {
  for (++i; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
    } else if (s[i] == '"') {
      return i + 1;
    }
  }
  return s.size();
}

// End of the value starting at s[i] (no leading whitespace). Valid JSON only.
size_t skip_value(std::string_view s, size_t i) {
  if (i >= s.size()) return i;
  if (s[i] == '"') return skip_string(s, i);
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    while (i < s.size()) {
      const char c = s[i];
      if (c == '"') {
        i = skip_string(s, i);
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') {
        if (--depth == 0) return i + 1;
      }
      ++i;
    }
    return i;
  }
  while (i < s.size() && !is_ws(s[i]) && s[i] != ',' && s[i] != '}' && s[i] != ']') ++i;
  return i;
}

std::string_view trim(std::string_view s) {
  const size_t b = skip_ws(s, 0);
  size_t e = s.size();
  while (e > b && is_ws(s[e - 1])) --e;
  return s.substr(b, e - b);
}

}  // namespace

bool is_valid(std::string_view text) { return nlohmann::json::accept(text); }

std::string minify(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    if (text[i] == '"') {
      const size_t e = skip_string(text, i);
      out.append(text.substr(i, e - i));
      i = e;
    } else {
      if (!is_ws(text[i])) out += text[i];
      ++i;
    }
  }
  return out;
}

std::optional<std::vector<Member>> object_members(std::string_view text) {
  const std::string_view s = trim(text);
  if (s.empty() || s.front() != '{' || !is_valid(s)) return std::nullopt;
  std::vector<Member> out;
  size_t i = skip_ws(s, 1);
  while (i < s.size() && s[i] != '}') {
    const size_t key_end = skip_string(s, i);
    std::string key = decode_string(s.substr(i, key_end - i));
    i = skip_ws(s, key_end) + 1;  // ':'
    i = skip_ws(s, i);
    const size_t value_end = skip_value(s, i);
    out.push_back(Member{std::move(key), s.substr(i, value_end - i), s[i] == '"'});
    i = skip_ws(s, value_end);
    if (i < s.size() && s[i] == ',') i = skip_ws(s, i + 1);
  }
  return out;
}

std::optional<std::vector<std::string_view>> array_items(std::string_view text) {
  const std::string_view s = trim(text);
  if (s.empty() || s.front() != '[' || !is_valid(s)) return std::nullopt;
  std::vector<std::string_view> out;
  size_t i = skip_ws(s, 1);
  while (i < s.size() && s[i] != ']') {
    const size_t e = skip_value(s, i);
    out.push_back(s.substr(i, e - i));
    i = skip_ws(s, e);
    if (i < s.size() && s[i] == ',') i = skip_ws(s, i + 1);
  }
  return out;
}

std::string decode_string(std::string_view raw) { return nlohmann::json::parse(raw).get<std::string>(); }

std::string quote(std::string_view s) {
  return nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace fp::json_text
