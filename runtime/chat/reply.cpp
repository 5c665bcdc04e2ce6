// parse_reply: generated text -> reasoning, content, tool calls (see chat_template.h).
#include "runtime/chat/chat_template.h"
#include "runtime/chat/dsml.h"

namespace fp {
namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view rtrim(std::string_view s) {
  while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

ParsedReply parse_reply(std::string_view text, bool thinking) {
  ParsedReply r;
  // Generation stops at the end-of-sentence marker; drop it and anything after it.
  if (const size_t eos = text.find(kEos); eos != std::string_view::npos) text = text.substr(0, eos);

  std::string_view rest = text;
  const bool opened = text.substr(0, kThinkStart.size()) == kThinkStart;
  if (opened) rest.remove_prefix(kThinkStart.size());
  if (thinking || opened) {
    const size_t close = rest.find(kThinkEnd);
    if (close != std::string_view::npos) {
      r.reasoning = rest.substr(0, close);
      rest = rest.substr(close + kThinkEnd.size());
    } else if (thinking) {  // still thinking when generation stopped; DSML here is not a call
      r.reasoning = rest;
      return r;
    } else {
      rest = text;  // "<think>" without "</think>" outside thinking mode: plain content
    }
  }

  const size_t start = rest.find(dsml::kCallsStart);
  if (start == std::string_view::npos) {
    r.content = rest;
    return r;
  }
  size_t end = 0;
  auto calls = dsml::parse_calls(rest.substr(start), end);
  if (!calls) {
    r.content = rest;
    r.malformed_tool_calls = true;
    return r;
  }
  r.content = rtrim(rest.substr(0, start));
  r.tool_calls = std::move(*calls);
  return r;
}

}  // namespace fp
