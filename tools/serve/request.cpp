// Validation of OpenAI request bodies (see request.h).
#include "tools/serve/request.h"

#include <cmath>
#include <limits>

#include "ops/core/error.h"
#include "tools/serve/api_error.h"

namespace fp::serve {

using nlohmann::json;

namespace {

// ---- the body ----------------------------------------------------------------

// Deepest nesting of [ and { outside strings. nlohmann's parser does not recurse, but
// printing or walking a value does: refuse pathological bodies up front.
int json_depth(const std::string& s) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean";
    case json::value_t::string: return "string";
    case json::value_t::array: return "array";
    case json::value_t::object: return "object";
    case json::value_t::number_float: return "number";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "integer";
    default: return "value";
  }
}

[[noreturn]] void wrong_type(const std::string& param, const char* expected, const json& v) {
  bad_request(param, str("'", param, "' must be ", expected, ", got ", type_name(v)), "invalid_type");
}

// ---- typed field access: null counts as absent ----------------------------------

const json* field(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<bool> get_bool(const json& obj, const char* key, const std::string& path) {
  const json* v = field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) wrong_type(path, "a boolean", *v);
  return v->get<bool>();
}

std::optional<std::string> get_string(const json& obj, const char* key, const std::string& path) {
  const json* v = field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) wrong_type(path, "a string", *v);
  return v->get<std::string>();
}

std::optional<double> get_number(const json& obj, const char* key, double lo, double hi) {
  const json* v = field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_number()) wrong_type(key, "a number", *v);
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    bad_request(key, str("'", key, "' is ", x, ", expected a number in [", lo, ", ", hi, "]"));
  return x;
}

std::optional<int64_t> get_int(const json& obj, const char* key, int64_t lo, int64_t hi) {
  const json* v = field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) wrong_type(key, "an integer", *v);
  if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max()))
    bad_request(key, str("'", key, "' is ", v->dump(), ", expected an integer in [", lo, ", ", hi, "]"));
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi)
    bad_request(key, str("'", key, "' is ", x, ", expected an integer in [", lo, ", ", hi, "]"));
  return x;
}

// ---- fields shared by both endpoints --------------------------------------------

constexpr size_t kMaxStopStrings = 16;
constexpr size_t kMaxStopBytes = 512;
constexpr int64_t kMaxTopLogprobs = 20;

void parse_common(const json& b, CommonRequest& r) {
  r.model = get_string(b, "model", "model").value_or("");
  r.stream = get_bool(b, "stream", "stream").value_or(false);
  if (const json* so = field(b, "stream_options")) {
    if (!so->is_object()) wrong_type("stream_options", "an object", *so);
    r.include_usage = get_bool(*so, "include_usage", "stream_options.include_usage").value_or(false);
  }

  // max_completion_tokens is the newer OpenAI name; either may be sent.
  auto max_tokens = get_int(b, "max_completion_tokens", std::numeric_limits<int64_t>::min(),
                            std::numeric_limits<int64_t>::max());
  const char* mt_name = "max_completion_tokens";
  if (!max_tokens) {
    max_tokens = get_int(b, "max_tokens", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
    mt_name = "max_tokens";
  }
  if (max_tokens) {
    if (*max_tokens <= 0) bad_request(mt_name, str("'", mt_name, "' is ", *max_tokens, ", expected at least 1"));
    r.max_tokens = uint32_t(std::min<int64_t>(*max_tokens, std::numeric_limits<uint32_t>::max()));
  }

  if (auto t = get_number(b, "temperature", 0, 2)) r.sampling.temperature = float(*t);
  if (auto p = get_number(b, "top_p", 0, 1)) {
    // Judged as the float the sampler gets: 1e-320 is 0 there.
    if (float(*p) <= 0) bad_request("top_p", str("'top_p' is ", *p, ", expected a number in (0, 1]"));
    r.sampling.top_p = float(*p);
  }
  if (auto k = get_int(b, "top_k", -1, std::numeric_limits<int32_t>::max())) r.sampling.top_k = int32_t(std::max<int64_t>(*k, 0));
  if (auto m = get_number(b, "min_p", 0, 1)) r.sampling.min_p = float(*m);
  if (auto s = get_int(b, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()))
    r.sampling.seed = uint64_t(*s);

  if (const json* stop = field(b, "stop")) {
    if (stop->is_string()) {
      r.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      if (stop->size() > kMaxStopStrings)
        bad_request("stop", str("'stop' has ", stop->size(), " strings, expected at most ", kMaxStopStrings));
      for (const auto& s : *stop) {
        if (!s.is_string()) wrong_type("stop", "a string or an array of strings", s);
        r.stop.push_back(s.get<std::string>());
      }
    } else {
      wrong_type("stop", "a string or an array of strings", *stop);
    }
    for (const auto& s : r.stop)
      if (s.size() > kMaxStopBytes)
        bad_request("stop", str("a stop string is ", s.size(), " bytes, expected at most ", kMaxStopBytes));
  }

  if (auto n = get_int(b, "n", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()); n && *n != 1)
    bad_request("n", str("'n' is ", *n, "; this server generates one choice per request (n = 1)"), "unsupported_value");
  for (const char* penalty : {"presence_penalty", "frequency_penalty"})
    if (auto p = get_number(b, penalty, -2, 2); p && *p != 0)
      bad_request(penalty, str("'", penalty, "' is not supported (only 0)"), "unsupported_value");
  if (const json* rf = field(b, "response_format")) {
    if (!rf->is_object()) wrong_type("response_format", "an object", *rf);
    const auto type = get_string(*rf, "type", "response_format.type");
    if (type && *type != "text")
      bad_request("response_format", str("response_format type '", *type, "' is not supported (only 'text')"),
                  "unsupported_value");
  }
  r.return_token_ids = get_bool(b, "return_token_ids", "return_token_ids").value_or(false);
  r.ignore_eos = get_bool(b, "ignore_eos", "ignore_eos").value_or(false);
  get_string(b, "user", "user");  // accepted and unused, but typed as documented
}

// ---- chat messages -----------------------------------------------------------------

// Message content: a string, or an array of {"type": "text", "text": ...} parts.
std::string content_text(const json& content, const std::string& path) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) wrong_type(path, "a string or an array of content parts", content);
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    const std::string p = str(path, "[", i, "]");
    if (!part.is_object()) wrong_type(p, "an object", part);
    const auto type = get_string(part, "type", p + ".type");
    if (type != "text")
      bad_request(p + ".type", str("content part type '", type.value_or(""), "' is not supported (only 'text')"),
                  "unsupported_value");
    const auto t = get_string(part, "text", p + ".text");
    if (!t) bad_request(p + ".text", "a text content part needs 'text'", "missing_required_parameter");
    text += *t;
  }
  return text;
}

ToolCall parse_tool_call(const json& tc, const std::string& path) {
  if (!tc.is_object()) wrong_type(path, "an object", tc);
  get_string(tc, "id", path + ".id");
  if (auto type = get_string(tc, "type", path + ".type"); type && *type != "function")
    bad_request(path + ".type", str("tool call type '", *type, "' is not supported (only 'function')"),
                "unsupported_value");
  const json* fn = field(tc, "function");
  if (!fn || !fn->is_object()) bad_request(path + ".function", "a tool call needs a 'function' object");
  ToolCall call;
  const auto name = get_string(*fn, "name", path + ".function.name");
  if (!name || name->empty()) bad_request(path + ".function.name", "a tool call needs a function name");
  call.name = *name;
  // OpenAI sends arguments as a JSON text; some clients send the object itself.
  if (const json* args = field(*fn, "arguments")) {
    if (args->is_string()) call.arguments_json = args->get<std::string>();
    else if (args->is_object()) call.arguments_json = args->dump();
    else wrong_type(path + ".function.arguments", "a string", *args);
  } else {
    call.arguments_json = "{}";
  }
  return call;
}

ChatMessage parse_message(const json& m, size_t i) {
  const std::string path = str("messages[", i, "]");
  if (!m.is_object()) wrong_type(path, "an object", m);
  const auto role = get_string(m, "role", path + ".role");
  if (!role) bad_request(path + ".role", str(path, " has no 'role'"), "missing_required_parameter");
  ChatMessage msg;
  msg.role = *role;
  if (msg.role == "developer") msg.role = "system";  // OpenAI's newer name for system
  if (msg.role != "system" && msg.role != "user" && msg.role != "assistant" && msg.role != "tool")
    bad_request(path + ".role",
                str("role '", *role, "' is not one of system, developer, user, assistant, tool"));
  const json* content = field(m, "content");
  if (content) msg.content = content_text(*content, path + ".content");
  msg.name = get_string(m, "name", path + ".name").value_or("");
  const auto tool_call_id = get_string(m, "tool_call_id", path + ".tool_call_id");
  if (msg.role == "tool" && msg.name.empty()) msg.name = tool_call_id.value_or("");
  if (msg.role == "assistant") {
    msg.reasoning = get_string(m, "reasoning_content", path + ".reasoning_content").value_or("");
    if (const json* calls = field(m, "tool_calls")) {
      if (!calls->is_array()) wrong_type(path + ".tool_calls", "an array", *calls);
      for (size_t k = 0; k < calls->size(); ++k)
        msg.tool_calls.push_back(parse_tool_call((*calls)[k], str(path, ".tool_calls[", k, "]")));
    }
    // No content and no calls is an empty turn; vLLM takes it too.
  } else if (!content) {
    bad_request(path + ".content", str("a ", *role, " message needs 'content'"), "missing_required_parameter");
  }
  return msg;
}

// tools: [{"type": "function", "function": {"name", "description"?, "parameters"?}}]
std::string parse_tools(const json& tools) {
  if (!tools.is_array()) wrong_type("tools", "an array", tools);
  for (size_t i = 0; i < tools.size(); ++i) {
    const json& t = tools[i];
    const std::string path = str("tools[", i, "]");
    if (!t.is_object()) wrong_type(path, "an object", t);
    if (auto type = get_string(t, "type", path + ".type"); type && *type != "function")
      bad_request(path + ".type", str("tool type '", *type, "' is not supported (only 'function')"),
                  "unsupported_value");
    const json* fn = field(t, "function");
    if (!fn || !fn->is_object()) bad_request(path + ".function", "a tool needs a 'function' object");
    const auto name = get_string(*fn, "name", path + ".function.name");
    if (!name || name->empty()) bad_request(path + ".function.name", "a tool needs a function name");
    get_string(*fn, "description", path + ".function.description");
    if (const json* p = field(*fn, "parameters"); p && !p->is_object())
      wrong_type(path + ".function.parameters", "an object", *p);
  }
  return tools.empty() ? std::string() : tools.dump();
}

}  // namespace

nlohmann::json parse_body(const std::string& body) {
  if (json_depth(body) > kMaxJsonDepth)
    bad_request("", str("the request body nests deeper than ", kMaxJsonDepth, " levels"), "invalid_json");
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) bad_request("", "the request body is not valid JSON", "invalid_json");
  if (!j.is_object()) bad_request("", str("the request body must be a JSON object, got ", type_name(j)), "invalid_json");
  return j;
}

ChatRequest parse_chat_request(const json& b) {
  ChatRequest r;
  parse_common(b, r);

  const json* messages = field(b, "messages");
  if (!messages) bad_request("messages", "'messages' is required", "missing_required_parameter");
  if (!messages->is_array()) wrong_type("messages", "an array", *messages);
  if (messages->empty()) bad_request("messages", "'messages' is empty, expected at least one message");
  for (size_t i = 0; i < messages->size(); ++i) r.messages.push_back(parse_message((*messages)[i], i));

  if (auto lp = get_bool(b, "logprobs", "logprobs"); lp && *lp) r.top_logprobs = 0;
  if (auto top = get_int(b, "top_logprobs", 0, kMaxTopLogprobs)) {
    if (r.top_logprobs < 0 && *top > 0)
      bad_request("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    if (r.top_logprobs >= 0) r.top_logprobs = int32_t(*top);
  }

  // Tools: rendered into the system block unless tool_choice is "none".
  std::string tool_choice = "auto";
  if (const json* tc = field(b, "tool_choice")) {
    if (tc->is_string()) {
      tool_choice = tc->get<std::string>();
      if (tool_choice != "none" && tool_choice != "auto" && tool_choice != "required")
        bad_request("tool_choice", str("tool_choice '", tool_choice, "' is not one of none, auto, required"));
    } else if (tc->is_object()) {
      // {"type": "function", "function": {"name": ...}}: a named function, not enforced.
      if (auto type = get_string(*tc, "type", "tool_choice.type"); type && *type != "function")
        bad_request("tool_choice.type", str("tool_choice type '", *type, "' is not supported (only 'function')"));
      if (const json* fn = field(*tc, "function")) {
        if (!fn->is_object()) wrong_type("tool_choice.function", "an object", *fn);
        get_string(*fn, "name", "tool_choice.function.name");
      }
    } else {
      wrong_type("tool_choice", "a string or an object", *tc);
    }
  }
  get_bool(b, "parallel_tool_calls", "parallel_tool_calls");
  if (const json* tools = field(b, "tools")) {
    std::string tools_json = parse_tools(*tools);
    if (tool_choice != "none") r.chat.tools_json = std::move(tools_json);
  }

  // Thinking. Off unless asked for, by any of the spellings clients use:
  //   chat_template_kwargs: {"thinking": true} (vLLM, DeepSeek) or {"enable_thinking": true}
  //   thinking: true | {"type": "enabled"|"disabled"} (ds4-server, Anthropic style)
  //   reasoning_effort: "none" | "minimal" | "low" | "medium" | "high" | "xhigh" | "max"
  // An explicit switch wins over reasoning_effort; any effort but "none" turns thinking
  // on; "max" also asks for Think Max (MODEL.md §9.2).
  std::optional<bool> thinking;
  if (const json* kw = field(b, "chat_template_kwargs")) {
    if (!kw->is_object()) wrong_type("chat_template_kwargs", "an object", *kw);
    if (auto t = get_bool(*kw, "thinking", "chat_template_kwargs.thinking")) thinking = t;
    if (auto t = get_bool(*kw, "enable_thinking", "chat_template_kwargs.enable_thinking")) thinking = t;
  }
  if (const json* t = field(b, "thinking")) {
    if (t->is_boolean()) {
      thinking = t->get<bool>();
    } else if (t->is_object()) {
      const auto type = get_string(*t, "type", "thinking.type");
      if (type && *type != "enabled" && *type != "disabled")
        bad_request("thinking.type", str("thinking type '", *type, "' is not one of enabled, disabled"));
      if (type) thinking = *type == "enabled";
    } else {
      wrong_type("thinking", "a boolean or an object", *t);
    }
  }
  if (auto effort = get_string(b, "reasoning_effort", "reasoning_effort")) {
    static const char* kEfforts[] = {"none", "minimal", "low", "medium", "high", "xhigh", "max"};
    if (std::find(std::begin(kEfforts), std::end(kEfforts), *effort) == std::end(kEfforts))
      bad_request("reasoning_effort",
                  str("reasoning_effort '", *effort, "' is not one of none, minimal, low, medium, high, xhigh, max"));
    if (!thinking) thinking = *effort != "none";
    r.think_max_requested = *effort == "max";
  }
  r.chat.thinking = thinking.value_or(false);
  if (!r.chat.thinking) r.think_max_requested = false;
  return r;
}

CompletionRequest parse_completion_request(const json& b) {
  CompletionRequest r;
  parse_common(b, r);

  const json* prompt = field(b, "prompt");
  if (!prompt) bad_request("prompt", "'prompt' is required", "missing_required_parameter");
  // One prompt per request: a string, [string], [ids...] or [[ids...]].
  const json* p = prompt;
  if (p->is_array() && p->size() == 1 && ((*p)[0].is_string() || (*p)[0].is_array())) p = &(*p)[0];
  if (p->is_string()) {
    r.prompt_text = p->get<std::string>();
  } else if (p->is_array()) {
    if (p->empty()) bad_request("prompt", "'prompt' is an empty array");
    for (const auto& id : *p) {
      if (!id.is_number_integer())
        bad_request("prompt", "'prompt' must be a string or one array of token ids; batches of prompts are not supported",
                    "invalid_type");
      r.prompt_ids.push_back(int32_t(std::clamp<int64_t>(id.get<int64_t>(), -1, std::numeric_limits<int32_t>::max())));
    }
  } else {
    wrong_type("prompt", "a string or an array of token ids", *prompt);
  }

  r.echo = get_bool(b, "echo", "echo").value_or(false);
  if (auto lp = get_int(b, "logprobs", 0, kMaxTopLogprobs)) r.top_logprobs = int32_t(*lp);
  if (auto bo = get_int(b, "best_of", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()); bo && *bo != 1)
    bad_request("best_of", "'best_of' is not supported (only 1)", "unsupported_value");
  if (auto s = get_string(b, "suffix", "suffix"); s && !s->empty())
    bad_request("suffix", "'suffix' is not supported", "unsupported_value");
  return r;
}

}  // namespace fp::serve
