// DSML rendering and parsing (see dsml.h). Escapes, after ds4_server.c: attribute
// values escape & < > " as entities; a string value escapes only the closing
// parameter tag ("&lt;/｜DSML｜parameter>"), a JSON value writes its '<' as \u003c.
#include "runtime/chat/dsml.h"

#include "runtime/chat/json_text.h"

namespace fp::dsml {
namespace {

std::string escape_attr(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string unescape_attr(std::string_view s) {
  static constexpr std::pair<std::string_view, char> kEntities[] = {
      {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
  std::string out;
  for (size_t i = 0; i < s.size();) {
    bool done = false;
    if (s[i] == '&') {
      for (const auto& [ent, c] : kEntities) {
        if (s.substr(i, ent.size()) == ent) {
          out += c;
          i += ent.size();
          done = true;
          break;
        }
      }
    }
    if (!done) out += s[i++];
  }
  return out;
}

// Replaces each occurrence of the closing parameter tag's '<' by `lt`.
std::string escape_param_end(std::string_view s, std::string_view lt) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (s.substr(i, kParamEnd.size()) == kParamEnd) {
      out += lt;
      ++i;
    } else {
      out += s[i++];
    }
  }
  return out;
}

std::string unescape_param_end(std::string_view s) {
  static const std::string escaped = "&lt;" + std::string(kParamEnd.substr(1));
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (s.substr(i, escaped.size()) == escaped) {
      out += kParamEnd;
      i += escaped.size();
    } else {
      out += s[i++];
    }
  }
  return out;
}

void append_param(std::string& out, std::string_view name, bool is_string, std::string_view value) {
  out += kParamStart;
  out += " name=\"";
  out += escape_attr(name);
  out += is_string ? "\" string=\"true\">" : "\" string=\"false\">";
  out += value;
  out += kParamEnd;
  out += '\n';
}

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

size_t skip_ws(std::string_view s, size_t i) {
  while (i < s.size() && is_ws(s[i])) ++i;
  return i;
}

bool starts_with_at(std::string_view s, size_t i, std::string_view p) { return s.substr(i, p.size()) == p; }

// The value of attribute `name` in an opening tag's text, unescaped.
std::optional<std::string> attr(std::string_view tag, std::string_view name) {
  std::string pat = " ";
  pat += name;
  pat += "=\"";
  const size_t p = tag.find(pat);
  if (p == std::string_view::npos) return std::nullopt;
  const size_t b = p + pat.size();
  const size_t e = tag.find('"', b);
  if (e == std::string_view::npos) return std::nullopt;
  return unescape_attr(tag.substr(b, e - b));
}

}  // namespace

std::string render_calls(const std::vector<ToolCall>& calls) {
  if (calls.empty()) return "";
  std::string out = "\n\n";
  out += kCallsStart;
  out += '\n';
  for (const ToolCall& call : calls) {
    out += kInvokeStart;
    out += " name=\"";
    out += escape_attr(call.name);
    out += "\">\n";
    const std::string_view args = call.arguments_json;
    const bool blank = args.find_first_not_of(" \t\r\n") == std::string_view::npos;
    if (!blank) {
      if (auto members = json_text::object_members(args)) {
        for (const auto& m : *members) {
          if (m.is_string) {
            append_param(out, m.key, true, escape_param_end(json_text::decode_string(m.raw), "&lt;"));
          } else {
            append_param(out, m.key, false, escape_param_end(json_text::minify(m.raw), "\\u003c"));
          }
        }
      } else {  // not a JSON object: pass the text through as one string parameter
        append_param(out, "arguments", true, escape_param_end(args, "&lt;"));
      }
    }
    out += kInvokeEnd;
    out += '\n';
  }
  out += kCallsEnd;
  return out;
}

std::optional<std::vector<ToolCall>> parse_calls(std::string_view s, size_t& end) {
  if (!starts_with_at(s, 0, kCallsStart)) return std::nullopt;
  std::vector<ToolCall> calls;
  size_t i = kCallsStart.size();
  for (;;) {
    i = skip_ws(s, i);
    if (starts_with_at(s, i, kCallsEnd)) {
      end = i + kCallsEnd.size();
      return calls;
    }
    if (!starts_with_at(s, i, kInvokeStart)) return std::nullopt;
    const size_t tag_end = s.find('>', i);
    if (tag_end == std::string_view::npos) return std::nullopt;
    auto name = attr(s.substr(i, tag_end - i), "name");
    if (!name) return std::nullopt;
    i = tag_end + 1;

    std::string args = "{";
    for (;;) {
      i = skip_ws(s, i);
      if (starts_with_at(s, i, kInvokeEnd)) {
        i += kInvokeEnd.size();
        break;
      }
      if (!starts_with_at(s, i, kParamStart)) return std::nullopt;
      const size_t ptag_end = s.find('>', i);
      if (ptag_end == std::string_view::npos) return std::nullopt;
      const std::string_view ptag = s.substr(i, ptag_end - i);
      auto pname = attr(ptag, "name");
      if (!pname) return std::nullopt;
      const bool is_string = attr(ptag, "string").value_or("true") != "false";
      const size_t value_begin = ptag_end + 1;
      const size_t value_end = s.find(kParamEnd, value_begin);
      if (value_end == std::string_view::npos) return std::nullopt;
      const std::string_view raw = s.substr(value_begin, value_end - value_begin);
      i = value_end + kParamEnd.size();

      if (args.size() > 1) args += ',';
      args += json_text::quote(*pname) + ':';
      if (is_string) {
        args += json_text::quote(unescape_param_end(raw));
      } else if (json_text::is_valid(raw)) {
        args += json_text::minify(raw);
      } else {  // not JSON after all: keep the text, so arguments stay valid JSON
        args += json_text::quote(raw);
      }
    }
    args += '}';
    calls.push_back(ToolCall{std::move(*name), std::move(args)});
  }
}

}  // namespace fp::dsml
