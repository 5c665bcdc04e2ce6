// `flashplan serve [MODEL] [--plan PLAN] [--host H] [--port P] [--api-key KEY] ...`:
// loads the model on its backend and serves the OpenAI-compatible HTTP API until
// SIGINT/SIGTERM. With no MODEL, the built-in tiny model.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <thread>

#include "ops/core/error.h"
#include "tools/command.h"
#include "tools/engine_args.h"
#include "tools/serve/server.h"

namespace {

struct ServeArgs {
  fp::cli::EngineArgs engine;
  fp::serve::ServerOptions server;
  uint32_t default_max_tokens = 0;
  bool quiet = false;
};

int serve(ServeArgs& a) {
  // Signals go to one waiting thread, which stops the server cleanly; no HTTP or
  // engine thread is ever interrupted by one.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  if (a.default_max_tokens > 0) a.server.default_max_tokens = a.default_max_tokens;
  a.server.log_requests = !a.quiet;
  std::unique_ptr<fp::Engine> engine = a.engine.open();
  fp::serve::Server server(*engine, a.server);

  std::atomic<bool> stopping{false};
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    if (stopping.exchange(true)) return;  // woken by run() returning, below
    std::fprintf(stderr, "flashplan serve: signal %d, stopping\n", sig);
    server.stop();
  });
  // Whichever way run() ends, wake the waiter so it can be joined.
  auto release_waiter = [&] {
    if (!stopping.exchange(true)) pthread_kill(waiter.native_handle(), SIGTERM);
    waiter.join();
  };
  try {
    const int port = server.bind();
    std::printf("flashplan serve: model '%s' (%s backend%s%s), context %llu, %u slot(s)\n", server.model_id().c_str(),
                engine->backend_name().c_str(), a.engine.plan.empty() ? "" : ", plan ", a.engine.plan.c_str(),
                (unsigned long long)server.max_context(), server.slots());
    std::printf("flashplan serve: listening on http://%s:%d\n", a.server.host.c_str(), port);
    std::fflush(stdout);
    server.run();
  } catch (...) {
    release_waiter();
    throw;
  }
  release_waiter();
  return 0;
}

}  // namespace

FP_COMMAND("serve", "Serve the OpenAI-compatible HTTP API (chat, completions, SSE streaming)", [](CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  a->engine.add(app, /*model_optional=*/true);
  app.add_option("--host", a->server.host, "Address to listen on")->capture_default_str();
  app.add_option("--port", a->server.port, "Port to listen on (0 = any free port)")->capture_default_str()
      ->check(CLI::Range(0, 65535));
  app.add_option("--api-key", a->server.api_key, "Require 'Authorization: Bearer KEY' on /v1/ routes");
  app.add_option("--served-model-name", a->server.served_names,
                 "Model id clients use; repeat for aliases (default: the model's name)")
      ->allow_extra_args(false);
  app.add_option("--parallel", a->server.parallel, "Sequences generated at once; more wait in the queue")
      ->capture_default_str()->check(CLI::Range(1u, 256u));
  app.add_option("--max-queue", a->server.max_queue, "Waiting requests beyond which the server answers 503")
      ->capture_default_str()->check(CLI::Range(size_t(1), size_t(1) << 20));
  app.add_option("--max-body-bytes", a->server.max_body_bytes, "Largest request body accepted (413 beyond)")
      ->capture_default_str()->check(CLI::Range(size_t(1024), size_t(1) << 30));
  app.add_option("--http-threads", a->server.http_threads, "Connections served at once")
      ->capture_default_str()->check(CLI::Range(4u, 4096u));
  app.add_option("--default-max-tokens", a->default_max_tokens,
                 "max_tokens when a request gives none (default: chat = rest of the context, completions = 16)");
  app.add_flag("-q,--quiet", a->quiet, "No per-request log lines on stderr");
  return [a]() { return serve(*a); };
});
