// Incremental reasoning/content deltas over parse_reply (see reply_stream.h).
#include "tools/serve/reply_stream.h"

#include <algorithm>

namespace fp::serve {

namespace {

// Markers whose partial or unfinished presence must not reach the client as text.
constexpr std::string_view kThinkEnd = "</think>";
constexpr std::string_view kDsml = "<\xEF\xBD\x9C" "DSML\xEF\xBD\x9C";  // "<｜DSML｜"

// Length of the longest suffix of `s` that is a proper prefix of `marker`.
size_t partial_marker_suffix(std::string_view s, std::string_view marker) {
  for (size_t k = std::min(marker.size() - 1, s.size()); k > 0; --k)
    if (s.substr(s.size() - k) == marker.substr(0, k)) return k;
  return 0;
}

size_t trailing_space(std::string_view s) {
  size_t n = 0;
  while (n < s.size() && std::string_view(" \t\r\n").find(s[s.size() - 1 - n]) != std::string_view::npos) ++n;
  return n;
}

// What of `now` may be sent given `sent`: the part beyond it, if `now` extends it.
std::string extension(const std::string& now, std::string& sent) {
  if (now.size() <= sent.size() || now.compare(0, sent.size(), sent) != 0) return {};
  std::string d = now.substr(sent.size());
  sent = now;
  return d;
}

}  // namespace

ReplyStream::Delta ReplyStream::push(std::string_view text) {
  text_.append(text);
  // The text that can no longer change meaning: cut at an unfinished DSML block and
  // before a partial marker.
  std::string_view stable = text_;
  if (size_t at = stable.find(kDsml); at != std::string_view::npos) stable = stable.substr(0, at);
  stable.remove_suffix(std::max(partial_marker_suffix(stable, kDsml),
                                thinking_ ? partial_marker_suffix(stable, kThinkEnd) : size_t(0)));
  return advance(parse_reply(stable, thinking_), /*final=*/false);
}

ReplyStream::Delta ReplyStream::finish(ParsedReply* final_reply) {
  *final_reply = parse_reply(text_, thinking_);
  return advance(*final_reply, /*final=*/true);
}

ReplyStream::Delta ReplyStream::advance(const ParsedReply& p, bool final) {
  std::string reasoning = p.reasoning, content = p.content;
  if (!final) {
    // A parser may trim whitespace at either end of a part; trailing whitespace is
    // sent once something follows it. Content before any non-space is held too.
    reasoning.resize(reasoning.size() - trailing_space(reasoning));
    content.resize(content.size() - trailing_space(content));
  }
  Delta d;
  d.reasoning = extension(reasoning, sent_reasoning_);
  d.content = extension(content, sent_content_);
  return d;
}

}  // namespace fp::serve
