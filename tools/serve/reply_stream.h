// Streams a chat reply as OpenAI deltas: reasoning_content while the model thinks,
// then content, then tool_calls at the end. The chat template's parse_reply is the
// one authority on how generated text splits into those parts; this class re-parses
// the text seen so far and sends only what extends what it already sent, holding
// back any tail that could still change meaning (a partial </think> or DSML marker,
// trailing whitespace a parser may trim, an unfinished tool-call block). So the
// streamed deltas add up to exactly the non-streamed message.
#pragma once
#include <string>
#include <string_view>

#include "runtime/chat/chat_template.h"

namespace fp::serve {

class ReplyStream {
 public:
  explicit ReplyStream(bool thinking) : thinking_(thinking) {}

  struct Delta {
    std::string reasoning, content;
    bool empty() const { return reasoning.empty() && content.empty(); }
  };

  // Adds generated text (already UTF-8 safe and stop-string free).
  Delta push(std::string_view text);
  // At the end: the final parse, and what it adds to what was sent.
  Delta finish(ParsedReply* final_reply);

 private:
  Delta advance(const ParsedReply& p, bool final);

  bool thinking_;
  std::string text_;
  std::string sent_reasoning_, sent_content_;
};

}  // namespace fp::serve
