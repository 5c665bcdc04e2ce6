// The HTTP layer of `flashplan serve` (see server.h): routes, auth, OpenAI request ->
// Job, Job output -> OpenAI responses and SSE chunks.
#include "tools/serve/server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <thread>

#include "ops/core/error.h"
#include "runtime/chat/chat_template.h"
#include "runtime/tokenizer/tokenizer.h"
#include "tools/serve/api_error.h"
#include "tools/serve/metrics.h"
#include "tools/serve/openapi.h"
#include "tools/serve/reply_stream.h"
#include "tools/serve/request.h"
#include "tools/serve/scheduler.h"

namespace fp::serve {

using nlohmann::json;

namespace {

// How often a waiting stream checks that its client is still there.
constexpr std::chrono::milliseconds kPollInterval{50};
// OpenAI reports an impossible token's logprob as -9999 (JSON has no -inf).
constexpr float kMinLogprob = -9999.0f;

std::string random_id(const char* prefix) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string id = prefix;
  for (int i = 0; i < 24; ++i) id += hex[rng() & 15];
  return id;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Generated text is sanitised UTF-8 already; `replace` guards anything else.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump(body), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) { send_json(res, e.status, error_body(e)); }

std::string sse(const json& j) { return "data: " + dump(j) + "\n\n"; }

json usage_json(size_t prompt, size_t completion) {
  return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
}

// The end of an SSE stream: a usage-only chunk when the client asked for one, then [DONE].
std::string sse_tail(const json& base, bool include_usage, size_t prompt, size_t completion) {
  std::string t;
  if (include_usage) {
    json u = base;
    u["choices"] = json::array();
    u["usage"] = usage_json(prompt, completion);
    t += sse(u);
  }
  return t + "data: [DONE]\n\n";
}

// Sends one step's payload; a failed write means the client left, which frees its slot.
bool send_step(httplib::DataSink& sink, const std::string& payload, Job& job, bool finished) {
  if (!sink.write(payload.data(), payload.size())) {
    job.cancel();
    return false;
  }
  if (finished) sink.done();
  return true;
}

// A stream whose job failed or was cancelled ends with an OpenAI error object, then [DONE].
std::string sse_failure(const JobOutput& out) {
  const ApiError e = out.finish == Finish::Error
                         ? ApiError(500, "generation failed: " + out.error, "server_error", "", "generation_failed")
                         : ApiError(503, out.error.empty() ? "cancelled" : out.error, "server_error", "", "cancelled");
  return sse(error_body(e)) + "data: [DONE]\n\n";
}

json bytes_json(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(int(c));
  return b;
}

// Which endpoint a path is, for metrics labels (bounded cardinality).
std::string endpoint_label(const std::string& path) {
  if (path == "/v1/chat/completions") return "chat_completions";
  if (path == "/v1/completions") return "completions";
  if (path == "/v1/models" || path.rfind("/v1/models/", 0) == 0) return "models";
  if (path == "/health") return "health";
  if (path == "/metrics") return "metrics";
  if (path == "/openapi.json") return "openapi";
  if (path == "/tokenize" || path == "/detokenize") return "tokenize";
  return "other";
}

// httplib listens with a backlog of 5 (CPPHTTPLIB_LISTEN_BACKLOG, fixed when Debian
// built the library): a burst of clients would overflow it and see connections fail.
// Linux lets listen() be called again on a listening socket to raise it.
class HttpServer : public httplib::Server {
 public:
  void raise_backlog(int backlog) {
    if (svr_sock_ != INVALID_SOCKET) ::listen(svr_sock_, backlog);
  }
};

constexpr int kListenBacklog = 1024;

}  // namespace

// ============================================================================
// Impl
// ============================================================================

struct Server::Impl {
  Impl(Engine& e, ServerOptions o);

  // ---- request -> job ----
  std::string check_model(const std::string& requested) const;
  GenerationInput make_input(const CommonRequest& r, std::vector<int32_t> prompt, const char* prompt_param,
                             uint32_t default_max_tokens) const;
  std::string token_text(int32_t id) const;
  std::vector<int32_t> chat_prompt(const ChatRequest& r) const;
  std::vector<int32_t> text_prompt(const std::string& text) const;

  // ---- handlers ----
  void chat(const std::string& body, httplib::Response& res);
  void completion(const std::string& body, httplib::Response& res);
  void models(const httplib::Request& req, httplib::Response& res);
  void method_not_allowed(const httplib::Request& req, httplib::Response& res);
  void tokenize(const std::string& body, httplib::Response& res);
  void detokenize(const std::string& body, httplib::Response& res);
  // POST without a body: httplib routes it apart from the content-reader handlers.
  void empty_body(const httplib::Request&, httplib::Response&) { parse_body(""); }
  void model(const httplib::Request& req, httplib::Response& res);
  json model_json(const std::string& id) const;

  // ---- job -> response ----
  json chat_logprobs(const std::vector<TokenLogprob>& lps) const;
  json completion_logprobs(const std::vector<TokenLogprob>& lps, size_t text_offset) const;
  static JobOutput wait(Job& job);
  static void throw_if_failed(const JobOutput& out);

  Engine& engine;
  const Tokenizer& tok;
  ServerOptions opt;
  Metrics metrics;
  Scheduler scheduler;
  std::vector<std::string> names;  // served model ids, first = default
  int64_t created = unix_now();
  std::string openapi;
  HttpServer http;
  int bound_port = -1;
  std::atomic<bool> stopping{false};
  std::atomic<int> run_state{0};  // 0 not running, 1 listening (or about to), 2 returned
};

Server::Impl::Impl(Engine& e, ServerOptions o)
    : engine(e), tok(e.tokenizer()), opt(std::move(o)), scheduler(e, opt.parallel, opt.max_queue, metrics) {
  names = opt.served_names.empty() ? std::vector<std::string>{engine.model_name()} : opt.served_names;
  openapi = dump(openapi_document(scheduler.max_context(), engine.config().n_vocab, !opt.api_key.empty(),
                                  FLASHPLAN_VERSION));
}

std::string Server::Impl::check_model(const std::string& requested) const {
  if (requested.empty()) return names.front();
  for (const auto& n : names)
    if (n == requested) return n;
  throw ApiError(404, str("the model '", requested, "' does not exist; this server serves '", names.front(), "'"),
                 "invalid_request_error", "model", "model_not_found");
}

// Prompt and limits against the context: prompt + max_tokens must fit.
GenerationInput Server::Impl::make_input(const CommonRequest& r, std::vector<int32_t> prompt, const char* prompt_param,
                                         uint32_t default_max_tokens) const {
  const uint64_t ctx = scheduler.max_context();
  if (prompt.empty()) bad_request(prompt_param, "the prompt is empty");
  if (prompt.size() >= ctx)
    bad_request(prompt_param,
                str("the prompt is ", prompt.size(), " tokens; the context holds ", ctx,
                    " tokens, which must leave room for at least one generated token"),
                "context_length_exceeded");
  const uint64_t room = ctx - prompt.size();
  GenerationInput in;
  if (r.max_tokens) {
    if (*r.max_tokens > room)
      bad_request("max_tokens",
                  str("max_tokens is ", *r.max_tokens, " but the prompt is ", prompt.size(), " tokens and the context ",
                      ctx, ", so at most ", room, " can be generated"),
                  "context_length_exceeded");
    in.max_tokens = *r.max_tokens;
  } else {
    in.max_tokens = uint32_t(std::min<uint64_t>(room, default_max_tokens));
  }
  in.prompt = std::move(prompt);
  in.sampling = r.sampling;
  in.stop = r.stop;
  in.top_logprobs = r.top_logprobs;
  in.ignore_eos = r.ignore_eos;
  return in;
}

// The chat prompt through the DS4 template. A conversation the template refuses (say,
// a tool result with no call before it) is the client's error.
std::vector<int32_t> Server::Impl::chat_prompt(const ChatRequest& r) const {
  ChatOptions options = r.chat;
  options.think_max = r.think_max_requested && scheduler.max_context() >= fp::kThinkMaxMinContext;
  try {
    return tok.encode(render_chat(r.messages, options), /*parse_special=*/true);
  } catch (const Error& e) {
    bad_request("messages", e.what());
  }
}

// A raw text prompt as `flashplan run` takes it: special tokens matched, BOS in front.
std::vector<int32_t> Server::Impl::text_prompt(const std::string& text) const {
  std::vector<int32_t> ids = tok.encode(text, /*parse_special=*/true);
  if (tok.bos() >= 0 && (ids.empty() || ids.front() != tok.bos())) ids.insert(ids.begin(), tok.bos());
  return ids;
}

std::string Server::Impl::token_text(int32_t id) const {
  const int32_t ids[1] = {id};
  return tok.decode(ids);
}

JobOutput Server::Impl::wait(Job& job) {
  JobOutput out;
  while (!out.finished) job.take(out, std::chrono::milliseconds(200));
  return out;
}

void Server::Impl::throw_if_failed(const JobOutput& out) {
  if (out.finish == Finish::Error)
    throw ApiError(500, "generation failed: " + out.error, "server_error", "", "generation_failed");
  if (out.finish == Finish::Cancelled)
    throw ApiError(503, out.error.empty() ? "the request was cancelled" : out.error, "server_error", "", "cancelled");
}

json Server::Impl::chat_logprobs(const std::vector<TokenLogprob>& lps) const {
  json content = json::array();
  for (const auto& lp : lps) {
    json top = json::array();
    for (const auto& [id, v] : lp.top) {
      const std::string t = token_text(id);
      top.push_back({{"token", sanitize_utf8(t)}, {"logprob", std::max(v, kMinLogprob)}, {"bytes", bytes_json(t)}});
    }
    const std::string t = token_text(lp.id);
    content.push_back({{"token", sanitize_utf8(t)},
                       {"logprob", std::max(lp.logprob, kMinLogprob)},
                       {"bytes", bytes_json(t)},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}};
}

// The legacy completions shape; text_offset counts bytes of each token's text.
json Server::Impl::completion_logprobs(const std::vector<TokenLogprob>& lps, size_t text_offset) const {
  json tokens = json::array(), token_lps = json::array(), tops = json::array(), offsets = json::array();
  for (const auto& lp : lps) {
    const std::string t = sanitize_utf8(token_text(lp.id));
    tokens.push_back(t);
    token_lps.push_back(std::max(lp.logprob, kMinLogprob));
    json top = json::object();
    for (const auto& [id, v] : lp.top) top[sanitize_utf8(token_text(id))] = std::max(v, kMinLogprob);
    tops.push_back(std::move(top));
    offsets.push_back(text_offset);
    text_offset += t.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", token_lps}, {"top_logprobs", tops}, {"text_offset", offsets}};
}

// ============================================================================
// POST /v1/chat/completions
// ============================================================================

namespace {

json tool_calls_json(const std::vector<ToolCall>& calls) {
  json out = json::array();
  for (const auto& c : calls)
    out.push_back({{"id", random_id("call_")},
                   {"type", "function"},
                   {"function", {{"name", c.name}, {"arguments", c.arguments_json}}}});
  return out;
}

const char* chat_finish_reason(Finish f, bool has_tool_calls) {
  if (f == Finish::Length) return "length";
  return has_tool_calls ? "tool_calls" : "stop";
}

// The state of one chat SSE stream, shared by the calls of httplib's content provider.
struct ChatStream {
  std::shared_ptr<Job> job;
  ReplyStream reply;
  json base;  // id, object, created, model
  bool thinking, want_logprobs, want_ids, include_usage;
  std::vector<int32_t> prompt_ids;
  size_t generated = 0;
  bool started = false;

  ChatStream(std::shared_ptr<Job> j, bool think) : job(std::move(j)), reply(think), thinking(think) {}

  json chunk(json delta, json finish_reason = nullptr) const {
    json c = base;
    c["choices"] = json::array({{{"index", 0}, {"delta", std::move(delta)}, {"logprobs", nullptr},
                                 {"finish_reason", std::move(finish_reason)}}});
    if (include_usage) c["usage"] = nullptr;
    return c;
  }
};

}  // namespace

void Server::Impl::chat(const std::string& raw_body, httplib::Response& res) {
  ChatRequest r = parse_chat_request(parse_body(raw_body));
  const std::string model_id = check_model(r.model);

  std::vector<int32_t> prompt = chat_prompt(r);
  const uint32_t default_max = opt.default_max_tokens.value_or(UINT32_MAX);
  auto job = std::make_shared<Job>(make_input(r, std::move(prompt), "messages", default_max));
  scheduler.submit(job);

  json base = {{"id", random_id("chatcmpl-")}, {"created", unix_now()}, {"model", model_id}};
  const bool want_logprobs = r.top_logprobs >= 0;

  if (!r.stream) {
    const JobOutput out = wait(*job);
    throw_if_failed(out);
    ReplyStream reply(r.chat.thinking);
    reply.push(out.text);
    ParsedReply parsed;
    reply.finish(&parsed);
    json message = {{"role", "assistant"}, {"content", parsed.content}};
    if (parsed.content.empty() && !parsed.tool_calls.empty()) message["content"] = nullptr;
    if (r.chat.thinking) message["reasoning_content"] = parsed.reasoning;
    if (!parsed.tool_calls.empty()) message["tool_calls"] = tool_calls_json(parsed.tool_calls);
    json choice = {{"index", 0},
                   {"message", std::move(message)},
                   {"logprobs", want_logprobs ? chat_logprobs(out.logprobs) : json(nullptr)},
                   {"finish_reason", chat_finish_reason(out.finish, !parsed.tool_calls.empty())}};
    if (r.return_token_ids) choice["token_ids"] = out.token_ids;
    json resp = base;
    resp["object"] = "chat.completion";
    resp["choices"] = json::array({std::move(choice)});
    resp["usage"] = usage_json(job->input().prompt.size(), out.token_ids.size());
    if (r.return_token_ids) resp["prompt_token_ids"] = job->input().prompt;
    send_json(res, 200, resp);
    return;
  }

  base["object"] = "chat.completion.chunk";
  auto st = std::make_shared<ChatStream>(job, r.chat.thinking);
  st->base = std::move(base);
  st->want_logprobs = want_logprobs;
  st->want_ids = r.return_token_ids;
  st->include_usage = r.include_usage;
  if (r.return_token_ids) st->prompt_ids = job->input().prompt;

  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, st](size_t, httplib::DataSink& sink) {
        std::string payload;
        if (!st->started) {
          // The role chunk goes out at once, before the first token.
          st->started = true;
          json c = st->chunk({{"role", "assistant"}, {"content", ""}});
          if (st->want_ids) c["prompt_token_ids"] = st->prompt_ids;
          payload = sse(c);
        } else {
          JobOutput out;
          while (!st->job->take(out, kPollInterval))
            if (!sink.is_writable()) {
              st->job->cancel();
              return false;
            }
          if (out.finish == Finish::Error || out.finish == Finish::Cancelled) {
            payload = sse_failure(out);
            sink.write(payload.data(), payload.size());
            sink.done();
            return true;
          }
          ReplyStream::Delta d = st->reply.push(out.text);
          ParsedReply parsed;
          if (out.finished) {
            ReplyStream::Delta rest = st->reply.finish(&parsed);
            d.reasoning += rest.reasoning;
            d.content += rest.content;
          }
          st->generated += out.token_ids.size();
          if (!d.empty() || !out.token_ids.empty()) {
            json delta = json::object();
            if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
            if (!d.content.empty()) delta["content"] = d.content;
            json c = st->chunk(std::move(delta));
            if (st->want_logprobs) c["choices"][0]["logprobs"] = chat_logprobs(out.logprobs);
            if (st->want_ids) c["choices"][0]["token_ids"] = out.token_ids;
            payload += sse(c);
          }
          if (out.finished) {
            if (!parsed.tool_calls.empty()) {
              json calls = tool_calls_json(parsed.tool_calls);
              for (size_t i = 0; i < calls.size(); ++i) calls[i]["index"] = i;
              payload += sse(st->chunk({{"tool_calls", std::move(calls)}}));
            }
            payload += sse(st->chunk(json::object(), chat_finish_reason(out.finish, !parsed.tool_calls.empty())));
            payload += sse_tail(st->base, st->include_usage, st->job->input().prompt.size(), st->generated);
          }
          return send_step(sink, payload, *st->job, out.finished);
        }
        return send_step(sink, payload, *st->job, /*finished=*/false);
      },
      [st](bool) { st->job->cancel(); });
}

// ============================================================================
// POST /v1/completions
// ============================================================================

namespace {

struct CompletionStream {
  std::shared_ptr<Job> job;
  json base;
  bool want_logprobs = false, want_ids = false, include_usage = false;
  std::string echo;  // prompt text sent first when echo is on
  size_t text_offset = 0, generated = 0;

  json chunk(std::string text, json finish_reason = nullptr) const {
    json c = base;
    c["choices"] = json::array({{{"index", 0}, {"text", std::move(text)}, {"logprobs", nullptr},
                                 {"finish_reason", std::move(finish_reason)}}});
    if (include_usage) c["usage"] = nullptr;
    return c;
  }
};

}  // namespace

void Server::Impl::completion(const std::string& raw_body, httplib::Response& res) {
  CompletionRequest r = parse_completion_request(parse_body(raw_body));
  const std::string model_id = check_model(r.model);

  // A text prompt starts with BOS, as `flashplan run` does; id prompts are taken as given.
  std::vector<int32_t> prompt;
  std::string echo;
  if (r.prompt_text) {
    prompt = text_prompt(*r.prompt_text);
    echo = *r.prompt_text;
  } else {
    for (int32_t id : r.prompt_ids)
      if (id < 0 || size_t(id) >= tok.size())
        bad_request("prompt", str("token id ", id, " is outside the vocabulary [0, ", tok.size(), ")"));
    prompt = r.prompt_ids;
    echo = sanitize_utf8(tok.decode(prompt));
  }
  if (!r.echo) echo.clear();
  // OpenAI's default for completions is 16 tokens.
  auto job = std::make_shared<Job>(make_input(r, std::move(prompt), "prompt", opt.default_max_tokens.value_or(16)));
  scheduler.submit(job);

  json base = {{"id", random_id("cmpl-")}, {"object", "text_completion"}, {"created", unix_now()}, {"model", model_id}};
  const bool want_logprobs = r.top_logprobs >= 0;

  if (!r.stream) {
    const JobOutput out = wait(*job);
    throw_if_failed(out);
    json choice = {{"index", 0},
                   {"text", echo + out.text},
                   {"logprobs", want_logprobs ? completion_logprobs(out.logprobs, echo.size()) : json(nullptr)},
                   {"finish_reason", out.finish == Finish::Length ? "length" : "stop"}};
    if (r.return_token_ids) choice["token_ids"] = out.token_ids;
    json resp = base;
    resp["choices"] = json::array({std::move(choice)});
    resp["usage"] = usage_json(job->input().prompt.size(), out.token_ids.size());
    if (r.return_token_ids) resp["prompt_token_ids"] = job->input().prompt;
    send_json(res, 200, resp);
    return;
  }

  auto st = std::make_shared<CompletionStream>();
  st->job = job;
  st->base = std::move(base);
  st->want_logprobs = want_logprobs;
  st->want_ids = r.return_token_ids;
  st->include_usage = r.include_usage;
  st->echo = std::move(echo);
  st->text_offset = st->echo.size();
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, st](size_t, httplib::DataSink& sink) {
        JobOutput out;
        while (!st->job->take(out, kPollInterval))
          if (!sink.is_writable()) {
            st->job->cancel();
            return false;
          }
        std::string payload;
        if (out.finish == Finish::Error || out.finish == Finish::Cancelled) {
          payload = sse_failure(out);
          sink.write(payload.data(), payload.size());
          sink.done();
          return true;
        }
        std::string text = std::move(st->echo) + out.text;
        st->echo.clear();
        st->generated += out.token_ids.size();
        if (!text.empty() || !out.token_ids.empty()) {
          json c = st->chunk(std::move(text));
          if (st->want_logprobs) {
            c["choices"][0]["logprobs"] = completion_logprobs(out.logprobs, st->text_offset);
            for (const auto& t : c["choices"][0]["logprobs"]["tokens"]) st->text_offset += t.get<std::string>().size();
          }
          if (st->want_ids) {
            c["choices"][0]["token_ids"] = out.token_ids;
            if (st->generated == out.token_ids.size()) c["prompt_token_ids"] = st->job->input().prompt;
          }
          payload += sse(c);
        }
        if (out.finished) {
          payload += sse(st->chunk("", out.finish == Finish::Length ? "length" : "stop"));
          payload += sse_tail(st->base, st->include_usage, st->job->input().prompt.size(), st->generated);
        }
        return send_step(sink, payload, *st->job, out.finished);
      },
      [st](bool) { st->job->cancel(); });
}

// ============================================================================
// GET /v1/models
// ============================================================================

json Server::Impl::model_json(const std::string& id) const {
  return {{"id", id}, {"object", "model"}, {"created", created}, {"owned_by", "flashplan"},
          {"max_model_len", scheduler.max_context()}};
}

// ============================================================================
// POST /tokenize, /detokenize (vLLM's shapes): what a prompt costs, what ids say
// ============================================================================

void Server::Impl::tokenize(const std::string& raw_body, httplib::Response& res) {
  const json body = parse_body(raw_body);
  const json* prompt = body.contains("prompt") && !body["prompt"].is_null() ? &body["prompt"] : nullptr;
  if (prompt && !prompt->is_string()) bad_request("prompt", "'prompt' must be a string", "invalid_type");
  std::vector<int32_t> ids;
  if (body.contains("messages")) {
    ChatRequest r = parse_chat_request(body);  // validates model too
    check_model(r.model);
    ids = chat_prompt(r);
  } else {
    if (!prompt) bad_request("prompt", "'prompt' or 'messages' is required", "missing_required_parameter");
    if (body.contains("model") && !body["model"].is_null()) {
      if (!body["model"].is_string()) bad_request("model", "'model' must be a string", "invalid_type");
      check_model(body["model"].get<std::string>());
    }
    ids = text_prompt(prompt->get<std::string>());
  }
  send_json(res, 200, {{"count", ids.size()}, {"max_model_len", scheduler.max_context()}, {"tokens", ids}});
}

void Server::Impl::detokenize(const std::string& raw_body, httplib::Response& res) {
  const json body = parse_body(raw_body);
  if (body.contains("model") && !body["model"].is_null()) {
    if (!body["model"].is_string()) bad_request("model", "'model' must be a string", "invalid_type");
    check_model(body["model"].get<std::string>());
  }
  const json* tokens = body.contains("tokens") && !body["tokens"].is_null() ? &body["tokens"] : nullptr;
  if (!tokens) bad_request("tokens", "'tokens' is required", "missing_required_parameter");
  if (!tokens->is_array()) bad_request("tokens", "'tokens' must be an array of token ids", "invalid_type");
  std::vector<int32_t> ids;
  for (const auto& t : *tokens) {
    if (!t.is_number_integer()) bad_request("tokens", "'tokens' must be an array of token ids", "invalid_type");
    const int64_t id = t.is_number_unsigned() && t.get<uint64_t>() > uint64_t(INT64_MAX) ? -1 : t.get<int64_t>();
    if (id < 0 || uint64_t(id) >= tok.size())
      bad_request("tokens", str("token id ", t.dump(), " is outside the vocabulary [0, ", tok.size(), ")"));
    ids.push_back(int32_t(id));
  }
  send_json(res, 200, {{"prompt", sanitize_utf8(tok.decode(ids))}});
}

void Server::Impl::method_not_allowed(const httplib::Request& req, httplib::Response&) {
  throw ApiError(405, str(req.method, " is not allowed on ", req.path), "invalid_request_error", "", "method_not_allowed");
}

void Server::Impl::models(const httplib::Request&, httplib::Response& res) {
  json data = json::array();
  for (const auto& n : names) data.push_back(model_json(n));
  send_json(res, 200, {{"object", "list"}, {"data", data}});
}

void Server::Impl::model(const httplib::Request& req, httplib::Response& res) {
  const std::string id = req.matches.size() > 1 ? std::string(req.matches[1]) : std::string();
  for (const auto& n : names)
    if (n == id) return send_json(res, 200, model_json(n));
  throw ApiError(404, str("the model '", id, "' does not exist"), "invalid_request_error", "model", "model_not_found");
}

// ============================================================================
// Server
// ============================================================================

Server::Server(Engine& engine, ServerOptions options) : impl_(std::make_unique<Impl>(engine, std::move(options))) {
  Impl& s = *impl_;
  auto& http = s.http;
  const size_t threads = std::max<uint32_t>(s.opt.http_threads, 4);
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_payload_max_length(s.opt.max_body_bytes);
  http.set_read_timeout(30, 0);
  http.set_write_timeout(30, 0);

  // Every handler's ApiError becomes its OpenAI body; anything else is a 500 with the
  // same shape. Nothing escapes into httplib, so one bad request never stops the server.
  auto guard = [](httplib::Response& res, const std::function<void()>& fn) {
    try {
      fn();
    } catch (const ApiError& e) {
      send_error(res, e);
      if (e.status == 401) res.set_header("WWW-Authenticate", "Bearer");
    } catch (const std::bad_alloc&) {
      send_error(res, ApiError(500, "out of memory", "server_error"));
    } catch (const std::exception& e) {
      send_error(res, ApiError(500, str("internal error: ", e.what()), "server_error"));
    }
  };
  auto guarded = [&s, guard](void (Impl::*handler)(const httplib::Request&, httplib::Response&)) {
    return [&s, guard, handler](const httplib::Request& req, httplib::Response& res) {
      guard(res, [&] { (s.*handler)(req, res); });
    };
  };
  // Auth: with --api-key, every /v1/ route and /tokenize, /detokenize need
  // "Authorization: Bearer KEY".
  auto check_auth = [&s](const httplib::Request& req) {
    const bool guarded_path = req.path.rfind("/v1/", 0) == 0 || req.path == "/tokenize" || req.path == "/detokenize";
    if (s.opt.api_key.empty() || !guarded_path) return;
    const std::string auth = req.get_header_value("Authorization");
    if (auth == "Bearer " + s.opt.api_key) return;
    throw ApiError(401, auth.empty() ? "missing API key: send 'Authorization: Bearer KEY'" : "invalid API key",
                   "invalid_request_error", "", "invalid_api_key");
  };

  // Request bodies are read through a content reader with our own limit: httplib
  // alone bounds only a declared Content-Length, not a chunked or gzip-encoded body.
  // A body over the limit is still read to its end (and dropped, up to kMaxDrain) so
  // the connection stays in step for the client's next request; the answer is 413.
  // Auth is checked after the body is read, for the same reason.
  constexpr size_t kMaxDrain = size_t(64) << 20;
  auto with_body = [&s, guard, check_auth](std::function<void(const std::string&, httplib::Response&)> handler) {
    return [&s, guard, check_auth, handler](const httplib::Request& req, httplib::Response& res,
                                            const httplib::ContentReader& reader) {
      std::string body;
      size_t dropped = 0;
      const bool ok = reader([&](const char* data, size_t n) {
        if (dropped == 0 && body.size() + n <= s.opt.max_body_bytes) {
          body.append(data, n);
          return true;
        }
        body.clear();
        dropped += n;
        return dropped <= kMaxDrain;
      });
      if (dropped > 0 || res.status == 413) {
        if (!ok) res.set_header("Connection", "close");
        return send_error(res, ApiError(413, str("the request body is larger than the server's limit of ",
                                                 s.opt.max_body_bytes, " bytes (--max-body-bytes)"),
                                        "invalid_request_error", "", "request_too_large"));
      }
      if (!ok)
        return send_error(res, ApiError(400, "the request body could not be read", "invalid_request_error", "",
                                        "invalid_body"));
      guard(res, [&] {
        check_auth(req);
        handler(body, res);
      });
    };
  };

  // Requests without a body are checked before routing. A body on a method that takes
  // none (GET, HEAD, OPTIONS) is refused before httplib would read it without a limit.
  http.set_pre_routing_handler([check_auth](const httplib::Request& req, httplib::Response& res) {
    const bool has_body = req.has_header("Transfer-Encoding") ||
                          (req.has_header("Content-Length") && req.get_header_value("Content-Length") != "0");
    const bool body_method = req.method == "POST" || req.method == "PUT" || req.method == "PATCH" ||
                             req.method == "DELETE";
    try {
      if (has_body && !body_method)
        throw ApiError(400, str(req.method, " requests carry no body"), "invalid_request_error", "", "invalid_body");
      if (!has_body) check_auth(req);
    } catch (const ApiError& e) {
      send_error(res, e);
      if (e.status == 401) res.set_header("WWW-Authenticate", "Bearer");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  http.Post("/v1/chat/completions", with_body([&s](const std::string& b, httplib::Response& res) { s.chat(b, res); }));
  http.Post("/v1/completions", with_body([&s](const std::string& b, httplib::Response& res) { s.completion(b, res); }));
  http.Post("/tokenize", with_body([&s](const std::string& b, httplib::Response& res) { s.tokenize(b, res); }));
  http.Post("/detokenize", with_body([&s](const std::string& b, httplib::Response& res) { s.detokenize(b, res); }));
  // The same routes without a body (Content-Length: 0): httplib dispatches those to
  // plain handlers; they get the usual "not valid JSON" answer.
  http.Post("/v1/chat/completions", guarded(&Impl::empty_body));
  http.Post("/v1/completions", guarded(&Impl::empty_body));
  http.Post("/tokenize", guarded(&Impl::empty_body));
  http.Post("/detokenize", guarded(&Impl::empty_body));
  // Any other body-carrying request is read under the same limit, then refused.
  auto no_route = [](const char* what) {
    return [what](const std::string&, httplib::Response& res) {
      throw ApiError(std::string(what) == "method" ? 405 : 404, str("no such ", what, " on this server"),
                     "invalid_request_error", "", std::string(what) == "method" ? "method_not_allowed" : "not_found");
    };
  };
  for (const char* path : {"/v1/models", R"(/v1/models/(.+))", "/health", "/metrics", "/openapi.json"})
    http.Post(path, with_body(no_route("method")));
  http.Get("/v1/chat/completions", guarded(&Impl::method_not_allowed));
  http.Get("/v1/completions", guarded(&Impl::method_not_allowed));
  http.Post(".*", with_body(no_route("route")));
  http.Put(".*", with_body(no_route("route")));
  http.Patch(".*", with_body(no_route("route")));
  http.Delete(".*", with_body(no_route("route")));
  http.Get("/v1/models", guarded(&Impl::models));
  http.Get(R"(/v1/models/(.+))", guarded(&Impl::model));
  http.Get("/health", [&s](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, {{"status", "ok"}, {"queue_depth", s.scheduler.queue_depth()},
                         {"running", s.scheduler.running()}, {"slots", s.scheduler.slots()}});
  });
  http.Get("/metrics", [&s](const httplib::Request&, httplib::Response& res) {
    res.set_content(s.metrics.render(s.scheduler.queue_depth(), s.scheduler.running(), s.scheduler.slots()),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
  http.Get("/openapi.json", [&s](const httplib::Request&, httplib::Response& res) {
    res.set_content(s.openapi, "application/json");
  });

  // Statuses httplib produces itself (404 route, 413 body, 400 bad HTTP, ...) get the
  // OpenAI shape too; bodies our handlers already wrote are left alone.
  http.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string msg;
    std::string code;
    switch (res.status) {
      case 404: msg = str("no route for ", req.method, " ", req.path); code = "not_found"; break;
      case 413: msg = "the request body is larger than the server's limit (--max-body-bytes)"; code = "request_too_large"; break;
      case 414: msg = "the request URI is too long"; code = "uri_too_long"; break;
      default: msg = str("HTTP status ", res.status); break;
    }
    send_json(res, res.status, error_body(msg, error_type_for_status(res.status), "", code));
    return httplib::Server::HandlerResponse::Handled;
  }));
  http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, str("internal error: ", what), "server_error"));
  });

  // Counted just before the response line is written (httplib calls the post-routing
  // handler there for every response), so a client holding its reply finds it counted; the
  // logger runs only after the body has gone out.
  http.set_post_routing_handler([&s](const httplib::Request& req, httplib::Response& res) {
    s.metrics.request_done(endpoint_label(req.path), res.status);
  });
  http.set_logger([&s](const httplib::Request& req, const httplib::Response& res) {
    if (s.opt.log_requests)
      std::fprintf(stderr, "serve: %s %s %d %s\n", req.method.c_str(), req.path.c_str(), res.status,
                   req.remote_addr.c_str());
  });
}

Server::~Server() { stop(); }

int Server::bind() {
  Impl& s = *impl_;
  if (s.bound_port > 0) return s.bound_port;
  if (s.opt.port == 0) {
    s.bound_port = s.http.bind_to_any_port(s.opt.host);
    if (s.bound_port < 0) fail("serve: cannot bind ", s.opt.host, " to any port");
  } else if (s.http.bind_to_port(s.opt.host, s.opt.port)) {
    s.bound_port = s.opt.port;
  } else {
    fail("serve: cannot bind ", s.opt.host, ":", s.opt.port, " (in use, or not an address of this machine)");
  }
  s.http.raise_backlog(kListenBacklog);
  return s.bound_port;
}

// stop() may come at any moment, also before run() listens: run_state tells it
// whether to wait for httplib to start (stopping earlier would be a no-op there).
void Server::run() {
  Impl& s = *impl_;
  bind();
  s.run_state.store(1);
  if (!s.stopping.load()) s.http.listen_after_bind();
  s.run_state.store(2);
}

const std::string& Server::model_id() const { return impl_->names.front(); }
uint64_t Server::max_context() const { return impl_->scheduler.max_context(); }
uint32_t Server::slots() const { return impl_->scheduler.slots(); }

void Server::stop() {
  Impl& s = *impl_;
  s.stopping.store(true);
  // Jobs first: HTTP threads waiting on them must return before httplib joins them.
  s.scheduler.shutdown();
  while (s.run_state.load() == 1 && !s.http.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  s.http.stop();
}

}  // namespace fp::serve
