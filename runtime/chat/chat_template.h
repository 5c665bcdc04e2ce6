// DeepSeek V4's chat format (MODEL.md §9.2, as ds4 renders it): the prompt text for a
// conversation, and the split of generated text into reasoning, content and DSML tool
// calls. The rendered text carries the special tokens as text; the tokenizer matches
// them as single ids (Tokenizer::encode with parse_special).
//
//   <｜begin▁of▁sentence｜>[think-max prefix][system text]["\n\n" tools block]
//   <｜User｜>{user}<｜Assistant｜></think>{answer}[DSML calls]<｜end▁of▁sentence｜>  (history)
//   <｜User｜><tool_result>{result}</tool_result>...                               (tool results)
//   <｜User｜>{user}<｜Assistant｜><think>          (generation prompt, thinking; else </think>)
//
// No newlines are inserted between parts. In thinking mode a past assistant turn keeps
// <think>{reasoning}</think> only if it comes after the last user message or tools are
// in play (tools given, or any tool call/result in the history); otherwise just
// </think>. Roles: system and developer (joined with "\n\n" right after BOS), user,
// assistant, tool and function (tool results). ChatMessage::name is not rendered (ds4
// does not either).
//
// Differences from ds4_server.c, on purpose:
//  * The tools block follows the system text (ds4 now puts it first for its KV-cache
//    trimming; the model card and ds4's earlier versions put system text first).
//  * tools_json is the OpenAI `tools` array; each tool ({"type":"function","function":
//    {...}} gives its "function" object) is written as one minified JSON line.
//  * parse_reply undoes exactly the escapes render_chat writes, so render -> parse
//    round-trips: in string="true" values only "&lt;/｜DSML｜parameter>" is unescaped
//    (ds4 also turns &amp; &lt; &gt; &quot; &apos; back, changing text the model was
//    told to write raw).
//  * A string="false" value that is not valid JSON is kept as a JSON string, so
//    arguments_json is always a valid JSON object.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fp {

struct ToolCall {
  std::string name;
  std::string arguments_json;  // a JSON object, e.g. {"path":"/tmp/x","depth":2}
};

struct ChatMessage {
  std::string role, content, reasoning;
  std::vector<ToolCall> tool_calls;  // assistant only
  std::string name;
};

struct ChatOptions {
  bool thinking = false;
  std::string tools_json;  // OpenAI `tools` array; empty: no tools
  bool think_max = false;  // implies thinking; see kThinkMaxMinContext
  bool add_generation_prompt = true;
};

std::string render_chat(const std::vector<ChatMessage>& messages, const ChatOptions& opts);

struct ParsedReply {
  std::string reasoning, content;
  std::vector<ToolCall> tool_calls;
  // A DSML tool-call block was started but could not be parsed: content then holds the
  // raw text from the end of reasoning on (DSML included) and tool_calls is empty.
  bool malformed_tool_calls = false;
};

// `generated_text` is what the model wrote after the generation prompt (a trailing
// end-of-sentence marker is dropped). With thinking, the text up to the first </think>
// is reasoning (all of it, if there is no </think>: the generation stopped while
// thinking); tool calls are looked for only after it.
ParsedReply parse_reply(std::string_view generated_text, bool thinking);

// The DS4 special strings.
inline constexpr std::string_view kBos = "<｜begin▁of▁sentence｜>";
inline constexpr std::string_view kEos = "<｜end▁of▁sentence｜>";
inline constexpr std::string_view kUser = "<｜User｜>";
inline constexpr std::string_view kAssistant = "<｜Assistant｜>";
inline constexpr std::string_view kThinkStart = "<think>";
inline constexpr std::string_view kThinkEnd = "</think>";
inline constexpr std::string_view kDsml = "｜DSML｜";

// The model card recommends think-max only with a context of at least this many
// tokens (ds4: DS4_THINK_MAX_MIN_CONTEXT); the caller decides, render_chat does not.
inline constexpr uint32_t kThinkMaxMinContext = 393216;
std::string_view think_max_prefix();

// The system-prompt block that describes the DSML tool-call format and lists the
// tools (empty for an empty tools_json).
std::string tools_block(std::string_view tools_json);

}  // namespace fp
