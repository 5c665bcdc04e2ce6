// `flashplan chat [MODEL]`: an interactive conversation through the DS4 chat template
// (runtime/chat), on the CPU executor; the built-in tiny model when no MODEL is given.
// Reads one user message per stdin line, so it also works piped (no prompt is printed
// when stdin is not a terminal). Commands: /think and /nothink switch thinking mode,
// /reset starts over, /exit or /quit (or end of input) leaves.
//
// Each turn re-renders the whole conversation; the session keeps the tokens it already
// holds when the new prompt extends them and starts over otherwise (e.g. when an
// earlier turn's reasoning is dropped from the history).
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "ops/core/error.h"
#include "ops/core/parallel.h"
#include "runtime/chat/chat_template.h"
#include "runtime/generate/generate.h"
#include "tools/command.h"
#include "tools/engine_args.h"

FP_COMMAND("chat", "Interactive chat through the chat template (CPU executor; no MODEL: the built-in tiny model)",
           [](CLI::App& app) {
  struct Opts {
    fp::cli::EngineArgs engine;
    fp::cli::SamplingArgs sampling;
    std::string system;
    bool think = false, stats = false;
  };
  auto o = std::make_shared<Opts>();
  o->engine.add(app, true);
  o->engine.add_mtp(app);
  o->sampling.add(app, 256);
  app.add_option("--system", o->system, "system prompt");
  app.add_flag("--think", o->think, "start in thinking mode (toggle with /think, /nothink)");
  app.add_flag("--stats", o->stats, "print tokens and tok/s after each reply (stderr)");
  return [o]() {
    const bool tty = isatty(STDIN_FILENO) != 0;
    auto engine = o->engine.open();
    const fp::Tokenizer& tok = engine->tokenizer();
    fp::Sampler sampler(o->sampling.s);
    auto session = engine->new_session();
    std::vector<int32_t> held;  // tokens the session holds
    std::vector<fp::ChatMessage> messages;
    if (!o->system.empty()) messages.push_back({"system", o->system, "", {}, ""});
    bool thinking = o->think;
    fp::GenerateOptions g;
    g.max_tokens = o->sampling.max_tokens;
    g.mtp_draft = o->engine.mtp_draft;
    for (std::string_view stop : {fp::kEos, fp::kUser})
      if (auto id = tok.special(stop)) g.stop_tokens.push_back(*id);
    if (g.stop_tokens.empty() && tok.eos() >= 0) g.stop_tokens.push_back(tok.eos());
    if (tty)
      std::fprintf(stderr, "flashplan chat: %s on %s, %d threads. /think /nothink /reset /exit\n",
                   engine->model_name().c_str(), engine->backend_name().c_str(), fp::thread_count());
    std::string line;
    for (;;) {
      if (tty) std::fprintf(stderr, thinking ? "think> " : "> ");
      if (!std::getline(std::cin, line)) break;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line == "/exit" || line == "/quit") break;
      if (line == "/think" || line == "/nothink") {
        thinking = line == "/think";
        std::printf("[thinking %s]\n", thinking ? "on" : "off");
        std::fflush(stdout);
        continue;
      }
      if (line == "/reset") {
        messages.erase(std::remove_if(messages.begin(), messages.end(), [](auto& m) { return m.role != "system"; }),
                       messages.end());
        session->reset();
        held.clear();
        std::printf("[conversation reset]\n");
        std::fflush(stdout);
        continue;
      }
      if (line.empty()) continue;
      messages.push_back({"user", line, "", {}, ""});
      fp::ChatOptions co;
      co.thinking = thinking;
      const std::vector<int32_t> prompt = tok.encode(fp::render_chat(messages, co), true);
      // Keep the held tokens when the new prompt extends them; else start over.
      const bool extends = held.size() < prompt.size() && std::equal(held.begin(), held.end(), prompt.begin());
      if (!extends) {
        session->reset();
        held.clear();
      }
      const std::vector<int32_t> feed(prompt.begin() + int64_t(held.size()), prompt.end());
      if (prompt.size() + size_t(g.max_tokens) + 1 > session->max_context())
        fp::fail("context full: the conversation needs ", prompt.size() + size_t(g.max_tokens) + 1,
                 " tokens, the session holds ", session->max_context(), " (use -c)");
      std::vector<int32_t> out;
      size_t printed = 0;
      auto stream = [&](int32_t t) {
        if (std::find(g.stop_tokens.begin(), g.stop_tokens.end(), t) != g.stop_tokens.end()) return true;
        const std::string text = tok.decode(out);
        if (text.size() > printed) {
          std::fwrite(text.data() + printed, 1, text.size() - printed, stdout);
          std::fflush(stdout);
          printed = text.size();
        }
        return true;
      };
      const fp::GenerateStats st = fp::generate(*session, feed, g, sampler, out, stream);
      std::printf("\n");
      std::fflush(stdout);
      // The session holds the prompt and every generated token but the last sampled one.
      held = prompt;
      held.insert(held.end(), out.begin(), out.end() - (out.empty() ? 0 : 1));
      if (!out.empty() && std::find(g.stop_tokens.begin(), g.stop_tokens.end(), out.back()) != g.stop_tokens.end())
        out.pop_back();
      const fp::ParsedReply reply = fp::parse_reply(tok.decode(out), thinking);
      messages.push_back({"assistant", reply.content, reply.reasoning, reply.tool_calls, ""});
      if (o->stats)
        std::fprintf(stderr, "[%lld prompt tokens at %.1f tok/s, %lld generated at %.1f tok/s]\n",
                     (long long)feed.size(), st.prefill_tps(), (long long)st.generated, st.decode_tps());
    }
    return 0;
  };
});
