// OpenAI request bodies -> validated, typed requests. Everything a client can get
// wrong is caught here and reported as a 400 naming the field (ApiError), before
// anything reaches the scheduler: wrong JSON types, out-of-range numbers, unknown
// roles, unsupported features (n > 1, penalties, non-text content). Fields we do not
// know are ignored, as vLLM and llama-server do, so clients sending extensions work.
// Limits that need the tokenizer (prompt vs. context) are checked by the server.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/chat/chat_template.h"
#include "tools/serve/job.h"

namespace fp::serve {

// Parses a request body. Malformed JSON, a non-object, or nesting deeper than
// kMaxJsonDepth give a 400.
constexpr int kMaxJsonDepth = 64;
nlohmann::json parse_body(const std::string& body);

struct CommonRequest {
  std::string model;                    // as sent; empty when the client sent none
  bool stream = false;
  bool include_usage = false;           // stream_options.include_usage
  std::optional<uint32_t> max_tokens;   // max_tokens / max_completion_tokens
  SamplingOptions sampling;
  std::vector<std::string> stop;
  int32_t top_logprobs = -1;            // < 0: no logprobs
  bool return_token_ids = false;        // vLLM: prompt_token_ids + choices[].token_ids
  bool ignore_eos = false;              // vLLM: keep generating past end-of-sequence
};

struct ChatRequest : CommonRequest {
  std::vector<ChatMessage> messages;
  ChatOptions chat;                     // thinking, think_max (see below), tools_json
  bool think_max_requested = false;     // reasoning_effort "max"; granted only with a large context
};

struct CompletionRequest : CommonRequest {
  std::optional<std::string> prompt_text;
  std::vector<int32_t> prompt_ids;      // when the prompt was given as token ids
  bool echo = false;
};

ChatRequest parse_chat_request(const nlohmann::json& body);
CompletionRequest parse_completion_request(const nlohmann::json& body);

}  // namespace fp::serve
