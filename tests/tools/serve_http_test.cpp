// The HTTP layer of `flashplan serve` in-process, driven by a scripted test engine
// whose replies we choose -- so the paths a random tiny model never reaches are
// exercised: thinking with </think>, DSML tool calls (streamed and not), UTF-8
// characters split across tokens, stop strings across tokens, end-of-sentence, exact
// logprobs, an engine that throws, and requests answered concurrently without mix-ups.
// Also the stream pieces on their own: TextStream against whole-text sanitising and
// ReplyStream against parse_reply. (The Python tests drive the real CPU engine.)
#include <doctest/doctest.h>
#include <httplib.h>

#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ops/core/error.h"
#include "runtime/chat/chat_template.h"
#include "runtime/chat/dsml.h"
#include "runtime/engine.h"
#include "runtime/tokenizer/byte_level.h"
#include "runtime/tokenizer/tokenizer.h"
#include "tools/serve/reply_stream.h"
#include "tools/serve/server.h"
#include "tools/serve/text_stream.h"

using nlohmann::json;

namespace {

// ---- a vocabulary: the 256 byte tokens and DS4's special strings ---------------------

const std::vector<std::string> kSpecials = {"<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>",
                                            "<｜Assistant｜>", "<think>", "</think>", "｜DSML｜"};

fp::Tokenizer test_tokenizer() {
  fp::Vocab v;
  for (const auto& s : kSpecials) v.tokens.push_back(s);
  for (int b = 0; b < 256; ++b) v.tokens.push_back(fp::byte_level::token_text(uint8_t(b)));
  v.token_types.assign(v.tokens.size(), int32_t(fp::TokenType::Normal));
  for (size_t i = 0; i < kSpecials.size(); ++i) v.token_types[i] = int32_t(fp::TokenType::Control);
  v.pre = "gpt-2";
  v.bos = 0;
  v.eos = 1;
  return fp::Tokenizer::from_vocab(v);
}

// ---- the scripted engine ------------------------------------------------------------------

// reply(prompt) -> the tokens to generate, in order; after them, end-of-sentence. An
// entry kThrow makes the session throw at that step (an engine failure).
constexpr int32_t kThrow = -7;
constexpr float kHigh = 10.0f;  // the scripted token's logit; all others are 0
using Reply = std::function<std::vector<int32_t>(std::span<const int32_t> prompt)>;

class ScriptedSession : public fp::Session {
 public:
  ScriptedSession(const Reply& reply, size_t vocab, int32_t eos, uint64_t ctx)
      : reply_(reply), logits_(vocab), eos_(eos), ctx_(ctx) {}

  std::span<const float> append(std::span<const int32_t> tokens) override {
    if (pos_ + tokens.size() > ctx_) fp::fail("scripted session: context full");
    if (pos_ == 0) {
      script_ = reply_(tokens);
      step_ = 0;
    } else {
      ++step_;
    }
    pos_ += tokens.size();
    const int32_t next = step_ < script_.size() ? script_[step_] : eos_;
    if (next == kThrow) fp::fail("scripted session: engine failure at step ", step_);
    std::fill(logits_.begin(), logits_.end(), 0.0f);
    logits_[size_t(next)] = kHigh;
    return logits_;
  }
  void reset() override { pos_ = 0; }
  uint64_t position() const override { return pos_; }
  uint64_t max_context() const override { return ctx_; }

 private:
  const Reply& reply_;
  std::vector<float> logits_;
  int32_t eos_;
  uint64_t ctx_, pos_ = 0;
  std::vector<int32_t> script_;
  size_t step_ = 0;
};

class ScriptedEngine : public fp::Engine {
 public:
  explicit ScriptedEngine(Reply reply, uint64_t ctx = 8192) : tok_(test_tokenizer()), reply_(std::move(reply)), ctx_(ctx) {
    cfg_.n_vocab = uint32_t(tok_.size());
  }
  const fp::ModelConfig& config() const override { return cfg_; }
  const fp::Tokenizer& tokenizer() const override { return tok_; }
  std::string backend_name() const override { return "scripted"; }
  std::string model_name() const override { return "scripted"; }
  std::unique_ptr<fp::Session> new_session() override {
    return std::make_unique<ScriptedSession>(reply_, tok_.size(), tok_.eos(), ctx_);
  }

 private:
  fp::ModelConfig cfg_;
  fp::Tokenizer tok_;
  Reply reply_;
  uint64_t ctx_;
};

Reply fixed(const std::string& text) {
  auto tok = std::make_shared<fp::Tokenizer>(test_tokenizer());
  auto ids = std::make_shared<std::vector<int32_t>>(tok->encode(text, true));
  return [ids](std::span<const int32_t>) { return *ids; };
}

// ---- a server on a free loopback port, stopped at scope exit ------------------------------

struct TestServer {
  ScriptedEngine engine;
  fp::serve::Server server;
  std::thread thread;
  int port;

  explicit TestServer(Reply reply, uint32_t parallel = 1)
      : engine(std::move(reply)), server(engine, options(parallel)), port(server.bind()) {
    thread = std::thread([this] { server.run(); });
  }
  ~TestServer() {
    server.stop();
    thread.join();
  }
  static fp::serve::ServerOptions options(uint32_t parallel) {
    fp::serve::ServerOptions o;
    o.port = 0;
    o.parallel = parallel;
    o.log_requests = false;
    return o;
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(30, 0);
    c.set_connection_timeout(5, 0);
    return c;
  }
  // POST -> (status, body)
  std::pair<int, std::string> post(const std::string& path, const json& body) const {
    auto c = client();
    auto res = c.Post(path.c_str(), body.dump(), "application/json");
    REQUIRE(res);
    return {res->status, res->body};
  }
};

std::vector<json> sse_events(const std::string& body, bool* done) {
  std::vector<json> out;
  *done = false;
  size_t at = 0;
  while ((at = body.find("data: ", at)) != std::string::npos) {
    const size_t end = body.find("\n\n", at);
    REQUIRE(end != std::string::npos);
    const std::string payload = body.substr(at + 6, end - at - 6);
    if (payload == "[DONE]") *done = true;
    else out.push_back(json::parse(payload));
    at = end + 2;
  }
  return out;
}

bool valid_utf8(const std::string& s) { return fp::serve::sanitize_utf8(s) == s; }

const std::string kReplacement = "\xEF\xBF\xBD";

}  // namespace

// ============================================================================
// TextStream
// ============================================================================

TEST_CASE("serve text: a character split across tokens is held back, not mangled") {
  fp::serve::TextStream t;
  t.push("\xE2\x82");  // the first two bytes of the euro sign
  CHECK(t.take_ready() == "");
  t.push("\xAC!");
  CHECK(t.take_ready() == "€!");
  // A subpart that can never complete is one U+FFFD, as Python's decode("replace").
  fp::serve::TextStream u;
  u.push("\xE2\x82");
  u.push("A");
  CHECK(u.take_ready() == kReplacement + "A");
  CHECK(fp::serve::sanitize_utf8("\xF0\x9F\x9A") == kReplacement);
  CHECK(fp::serve::sanitize_utf8("\xC0\xAF") == kReplacement + kReplacement);
  CHECK(fp::serve::sanitize_utf8("\xED\xA0\x80") == kReplacement + kReplacement + kReplacement);
}

TEST_CASE("serve text: streamed pieces add up to the whole text sanitised, for random bytes and splits") {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string all;
    const int n = int(rng() % 40);
    for (int i = 0; i < n; ++i) {
      // Mostly pieces of real characters, sometimes any byte.
      static const std::vector<std::string> pool = {"a", " ", "é", "€", "🚀", "東", "\xE2", "\x82", "\xAC",
                                                    "\xF0\x9F", "\x9A\x80", "\xFF", "\xC3"};
      all += rng() % 5 == 0 ? std::string(1, char(rng() & 0xFF)) : pool[rng() % pool.size()];
    }
    fp::serve::TextStream t;
    std::string streamed;
    for (size_t i = 0; i < all.size();) {
      const size_t k = std::min(all.size() - i, size_t(1 + rng() % 4));
      t.push(std::string_view(all).substr(i, k));
      const std::string piece = t.take_ready();
      CHECK(valid_utf8(piece));
      streamed += piece;
      i += k;
    }
    streamed += t.take_rest();
    REQUIRE(streamed == fp::serve::sanitize_utf8(all));
  }
}

TEST_CASE("serve text: stop strings across tokens cut the text before them; nothing past them is sent") {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 3000; ++trial) {
    std::string all;
    const int n = int(rng() % 30);
    for (int i = 0; i < n; ++i) all += "abc\xC3\xA9"[rng() % 5];  // includes split 'é' bytes
    std::vector<std::string> stops;
    for (int k = 0; k < 1 + int(rng() % 2); ++k) {
      std::string s;
      for (int i = 0; i < 1 + int(rng() % 3); ++i) s += "abc"[rng() % 3];
      stops.push_back(s);
    }
    std::vector<size_t> ends;  // token boundaries
    for (size_t i = 0; i < all.size();) {
      i += std::min(all.size() - i, size_t(1 + rng() % 3));
      ends.push_back(i);
    }
    // Expected: generation stops after the first token whose arrival completes a stop
    // string in the text so far (its final characters), which is cut at the earliest
    // stop string in it.
    std::string want;
    bool want_stop = false;
    for (size_t e = 0; e <= ends.size() && !want_stop; ++e) {
      const std::string_view bytes = std::string_view(all).substr(0, e < ends.size() ? ends[e] : all.size());
      want = fp::serve::sanitize_utf8(e < ends.size() ? bytes.substr(0, fp::serve::utf8_stable_prefix(bytes)) : bytes);
      size_t cut = std::string::npos;
      for (const auto& s : stops) cut = std::min(cut, want.find(s));
      if (cut != std::string::npos) {
        want.resize(cut);
        want_stop = true;
      }
    }

    fp::serve::TextStream t(stops);
    std::string streamed;
    bool stopped = false;
    size_t begin = 0;
    for (size_t e : ends) {
      stopped = t.push(std::string_view(all).substr(begin, e - begin));
      begin = e;
      streamed += t.take_ready();
      REQUIRE(want.compare(0, streamed.size(), streamed) == 0);  // never ahead of the answer
      if (stopped) break;
    }
    streamed += t.take_rest();
    REQUIRE(streamed == want);
    CHECK(stopped == want_stop);
  }
}

// ============================================================================
// ReplyStream
// ============================================================================

TEST_CASE("serve reply: streamed reasoning/content deltas add up to parse_reply, in any pieces") {
  const std::vector<fp::ToolCall> calls = {{"get_weather", R"({"city":"Paris","days":3})"}};
  const std::vector<std::pair<std::string, bool>> texts = {
      {"Let me check the weather.</think>Checking now." + fp::dsml::render_calls(calls), true},
      {"Plain answer, no tools.\n\nSecond paragraph.", false},
      {"thinking only, cut off", true},
      {"Here:" + fp::dsml::render_calls(calls) + fp::dsml::render_calls(calls), false},
      {"Broken <｜DSML｜tool_calls> markup", false},
  };
  std::mt19937 rng(3);
  for (const auto& [text, thinking] : texts) {
    for (int trial = 0; trial < 50; ++trial) {
      fp::serve::ReplyStream rs(thinking);
      std::string reasoning, content;
      for (size_t i = 0; i < text.size();) {
        // Split on byte boundaries too: the stream is fed only UTF-8-safe text in the
        // server, so keep characters whole here.
        size_t k = std::min(text.size() - i, size_t(1 + rng() % 7));
        while (i + k < text.size() && (static_cast<unsigned char>(text[i + k]) & 0xC0) == 0x80) ++k;
        const auto d = rs.push(std::string_view(text).substr(i, k));
        reasoning += d.reasoning;
        content += d.content;
        i += k;
      }
      fp::ParsedReply final_reply;
      const auto d = rs.finish(&final_reply);
      reasoning += d.reasoning;
      content += d.content;
      const fp::ParsedReply want = fp::parse_reply(text, thinking);
      REQUIRE(reasoning == want.reasoning);
      REQUIRE(content == want.content);
      REQUIRE(final_reply.tool_calls.size() == want.tool_calls.size());
    }
  }
}

// ============================================================================
// The HTTP layer over the scripted engine
// ============================================================================

TEST_CASE("serve http: thinking and a tool call, non-streamed and streamed") {
  const std::vector<fp::ToolCall> calls = {{"get_weather", R"({"city":"Paris"})"}};
  TestServer ts(fixed("I need the weather.</think>Checking." + fp::dsml::render_calls(calls)));
  const json tools = json::parse(R"([{"type":"function","function":{"name":"get_weather",
      "parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}])");
  json req = {{"messages", {{{"role", "user"}, {"content", "Weather in Paris?"}}}},
              {"tools", tools},
              {"chat_template_kwargs", {{"thinking", true}}},
              {"temperature", 0}};

  auto [status, body] = ts.post("/v1/chat/completions", req);
  INFO(body);
  REQUIRE(status == 200);
  const json r = json::parse(body);
  const json& msg = r["choices"][0]["message"];
  CHECK(msg["reasoning_content"] == "I need the weather.");
  CHECK(msg["content"] == "Checking.");
  REQUIRE(msg["tool_calls"].size() == 1);
  CHECK(msg["tool_calls"][0]["type"] == "function");
  CHECK(msg["tool_calls"][0]["function"]["name"] == "get_weather");
  CHECK(json::parse(msg["tool_calls"][0]["function"]["arguments"].get<std::string>()) == json{{"city", "Paris"}});
  CHECK(r["choices"][0]["finish_reason"] == "tool_calls");

  req["stream"] = true;
  req["stream_options"] = {{"include_usage", true}};
  auto [s2, b2] = ts.post("/v1/chat/completions", req);
  REQUIRE(s2 == 200);
  bool done = false;
  const auto events = sse_events(b2, &done);
  CHECK(done);
  std::string reasoning, content, finish;
  json stream_calls = json::array();
  for (const auto& e : events) {
    if (e["choices"].empty()) {
      CHECK(e["usage"] == r["usage"]);
      continue;
    }
    const json& d = e["choices"][0]["delta"];
    if (d.contains("reasoning_content")) reasoning += d["reasoning_content"].get<std::string>();
    if (d.contains("content")) content += d["content"].get<std::string>();
    if (d.contains("tool_calls"))
      for (const auto& c : d["tool_calls"]) stream_calls.push_back(c);
    if (!e["choices"][0]["finish_reason"].is_null()) finish = e["choices"][0]["finish_reason"];
    // Never a partial marker as text.
    CHECK(content.find("DSML") == std::string::npos);
    CHECK(reasoning.find("</think") == std::string::npos);
  }
  CHECK(reasoning == "I need the weather.");
  CHECK(content == "Checking.");
  CHECK(finish == "tool_calls");
  REQUIRE(stream_calls.size() == 1);
  CHECK(stream_calls[0]["index"] == 0);
  CHECK(stream_calls[0]["function"]["name"] == "get_weather");
}

TEST_CASE("serve http: end-of-sentence, stop strings, max_tokens, split characters, logprobs") {
  TestServer ts(fixed("Price: 5€ (final). More text."));

  // Runs to end-of-sentence: the text without it; the token counted.
  auto [s1, b1] = ts.post("/v1/completions", {{"prompt", "q"}, {"max_tokens", 100}, {"temperature", 0}, {"return_token_ids", true}});
  REQUIRE(s1 == 200);
  json r1 = json::parse(b1);
  CHECK(r1["choices"][0]["text"] == "Price: 5€ (final). More text.");
  CHECK(r1["choices"][0]["finish_reason"] == "stop");
  CHECK(r1["choices"][0]["token_ids"].back() == 1);
  CHECK(r1["usage"]["completion_tokens"] == r1["choices"][0]["token_ids"].size());

  // A stop string spanning tokens.
  auto [s2, b2] = ts.post("/v1/completions", {{"prompt", "q"}, {"max_tokens", 100}, {"temperature", 0}, {"stop", {"nal)", "zzz"}}});
  json r2 = json::parse(b2);
  CHECK(r2["choices"][0]["text"] == "Price: 5€ (fi");
  CHECK(r2["choices"][0]["finish_reason"] == "stop");

  // max_tokens: 10 byte tokens end inside the euro sign's 3 bytes; the stream never
  // sends half of it, the end flushes it as U+FFFD.
  auto [s3, b3] = ts.post("/v1/completions", {{"prompt", "q"}, {"max_tokens", 9}, {"temperature", 0}, {"stream", true}});
  bool done = false;
  std::string text;
  for (const auto& e : sse_events(b3, &done)) {
    const std::string piece = e["choices"][0]["text"];
    CHECK(valid_utf8(piece));
    text += piece;
  }
  CHECK(done);
  CHECK(text == "Price: 5" + kReplacement);

  // Logprobs: the scripted logits are known, so is log-softmax.
  auto [s4, b4] = ts.post("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "q"}}}},
                                                   {"max_tokens", 3}, {"temperature", 0}, {"logprobs", true},
                                                   {"top_logprobs", 2}});
  json r4 = json::parse(b4);
  const double v = double(ts.engine.config().n_vocab);
  const double want = kHigh - std::log(std::exp(double(kHigh)) + (v - 1));
  for (const auto& lp : r4["choices"][0]["logprobs"]["content"]) {
    CHECK(lp["logprob"].get<double>() == doctest::Approx(want).epsilon(1e-5));
    REQUIRE(lp["top_logprobs"].size() == 2);
    CHECK(lp["top_logprobs"][0]["token"] == lp["token"]);
    CHECK(lp["top_logprobs"][1]["logprob"].get<double>() == doctest::Approx(-std::log(std::exp(double(kHigh)) + (v - 1))).epsilon(1e-5));
  }
}

TEST_CASE("serve http: an engine failure is a 500 in the OpenAI shape, and the server goes on") {
  auto tok = std::make_shared<fp::Tokenizer>(test_tokenizer());
  TestServer ts([tok](std::span<const int32_t> prompt) {
    // Prompts ending in "!" fail at the third step.
    const std::string text = tok->decode(prompt);
    std::vector<int32_t> ids = tok->encode("okay", true);
    if (!text.empty() && text.back() == '!') ids.insert(ids.begin() + 2, kThrow);
    return ids;
  });
  auto [s1, b1] = ts.post("/v1/completions", {{"prompt", "boom!"}, {"max_tokens", 10}, {"temperature", 0}});
  CHECK(s1 == 500);
  const json e = json::parse(b1);
  CHECK(e["error"]["type"] == "server_error");
  CHECK(e["error"]["message"].get<std::string>().find("engine failure") != std::string::npos);

  auto [s2, b2] = ts.post("/v1/completions", {{"prompt", "boom!"}, {"max_tokens", 10}, {"temperature", 0}, {"stream", true}});
  CHECK(s2 == 200);  // the stream had started; the error comes as an event
  bool done = false;
  const auto events = sse_events(b2, &done);
  CHECK(done);
  REQUIRE(!events.empty());
  CHECK(events.back().contains("error"));

  auto [s3, b3] = ts.post("/v1/completions", {{"prompt", "fine"}, {"max_tokens", 10}, {"temperature", 0}});
  CHECK(s3 == 200);
  CHECK(json::parse(b3)["choices"][0]["text"] == "okay");
}

TEST_CASE("serve http: concurrent requests on several slots are answered in full and never mixed up") {
  // The engine echoes the prompt (after BOS): each reply names its own request.
  TestServer ts([](std::span<const int32_t> prompt) { return std::vector<int32_t>(prompt.begin() + 1, prompt.end()); },
                /*parallel=*/3);
  constexpr int kClients = 16, kRequests = 12;
  std::vector<int> failures(kClients, 0);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      auto cli = ts.client();
      for (int i = 0; i < kRequests; ++i) {
        const std::string prompt = "client " + std::to_string(c) + " request " + std::to_string(i) + " é€";
        json body = {{"prompt", prompt}, {"max_tokens", 200}, {"temperature", 0}, {"stream", i % 2 == 1}};
        auto res = cli.Post("/v1/completions", body.dump(), "application/json");
        if (!res || res->status != 200) {
          ++failures[c];
          MESSAGE("client " << c << " request " << i << ": " << (res ? res->body : httplib::to_string(res.error())));
          continue;
        }
        std::string text;
        if (i % 2 == 1) {
          bool done = false;
          for (const auto& e : sse_events(res->body, &done))
            if (!e["choices"].empty()) text += e["choices"][0]["text"].get<std::string>();
          if (!done) ++failures[c];
        } else {
          text = json::parse(res->body)["choices"][0]["text"];
        }
        if (text != prompt) {
          ++failures[c];
          MESSAGE("client " << c << " request " << i << ": got '" << text << "', want '" << prompt << "'");
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int c = 0; c < kClients; ++c) CHECK(failures[c] == 0);
}
