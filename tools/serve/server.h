// `flashplan serve`: the OpenAI-compatible HTTP front of one engine.
//   POST /v1/chat/completions   chat through the DS4 template (tools, thinking), SSE streaming
//   POST /v1/completions        raw-prompt completions, SSE streaming
//   POST /tokenize, /detokenize   token ids of a prompt or chat, and back (vLLM's shapes)
//   GET  /v1/models, /v1/models/{id}, /health, /metrics (Prometheus), /openapi.json
// HTTP threads parse and validate; generation happens on the scheduler's thread.
// Every failure a client can cause is an OpenAI-shaped error with its status; an
// exception that escapes a handler is a 500 with the same shape, and the server keeps
// serving.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/engine.h"

namespace fp::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                        // 0 = any free port (printed at start)
  std::string api_key;                    // empty = no auth
  std::vector<std::string> served_names;  // model ids accepted; empty = engine's model_name()
  uint32_t parallel = 1;                  // sequences running at once (scheduler slots)
  size_t max_queue = 1024;                // waiting requests beyond which 503
  size_t max_body_bytes = 8u << 20;
  uint32_t http_threads = 128;            // connections served at once
  std::optional<uint32_t> default_max_tokens;  // when a chat request gives none (default: rest of the context)
  bool log_requests = true;               // one line per request on stderr
};

class Server {
 public:
  Server(Engine& engine, ServerOptions options);
  ~Server();
  // Binds the listening socket and returns the port (the chosen one for port 0).
  // Throws fp::Error when the address cannot be bound.
  int bind();
  // Serves until stop() (binds first if bind() was not called).
  void run();
  void stop();  // safe from any thread

  const std::string& model_id() const;  // the default served model id
  uint64_t max_context() const;         // tokens per sequence
  uint32_t slots() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fp::serve
