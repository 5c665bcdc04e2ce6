// `flashplan run [MODEL] -p "text"`: generate from a prompt (CPU reference executor or
// CUDA, from a plan or not) and print the text and a summary (tokens, prefill and decode
// tok/s, MTP acceptance, and on CUDA how the weights were loaded). With no MODEL it runs
// the built-in tiny model. --json prints one object instead:
// {tokens, text, prompt_tokens, prefill_tps, decode_tps, mtp: {...}, load: {...}, ...}.
// The prompt is tokenized with special-token matching and gets BOS in front unless it
// already starts with it (or --no-bos).
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ops/core/error.h"
#include "ops/core/parallel.h"
#include "runtime/generate/generate.h"
#include "tools/command.h"
#include "tools/engine_args.h"

FP_COMMAND("run", "Generate text from a prompt (CPU reference executor or CUDA; no MODEL: the built-in tiny model)",
           [](CLI::App& app) {
  struct Opts {
    fp::cli::EngineArgs engine;
    fp::cli::SamplingArgs sampling;
    std::string prompt;
    bool json = false, no_bos = false, ignore_eos = false;
  };
  auto o = std::make_shared<Opts>();
  o->engine.add(app, true);
  o->engine.add_mtp(app);
  o->sampling.add(app, 64);
  app.add_option("-p,--prompt", o->prompt, "prompt text")->required();
  app.add_flag("--json", o->json, "print one JSON object instead of text and a summary");
  app.add_flag("--no-bos", o->no_bos, "do not put BOS in front of the prompt");
  app.add_flag("--ignore-eos", o->ignore_eos, "keep generating after end-of-sentence");
  return [o]() {
    auto engine = o->engine.open();
    const fp::Tokenizer& tok = engine->tokenizer();
    std::vector<int32_t> prompt = tok.encode(o->prompt, true);
    if (!o->no_bos && tok.bos() >= 0 && (prompt.empty() || prompt[0] != tok.bos()))
      prompt.insert(prompt.begin(), tok.bos());
    if (prompt.empty()) fp::fail("-p: the prompt tokenizes to nothing");

    fp::GenerateOptions g;
    g.max_tokens = o->sampling.max_tokens;
    g.mtp_draft = o->engine.mtp_draft;
    if (!o->ignore_eos && tok.eos() >= 0) g.stop_tokens.push_back(tok.eos());
    fp::Sampler sampler(o->sampling.s);
    auto session = engine->new_session();
    std::vector<int32_t> out;
    size_t printed = 0;
    auto stream = [&](int32_t) {
      if (o->json) return true;
      const std::string text = tok.decode(out);
      if (text.size() > printed) {
        std::fwrite(text.data() + printed, 1, text.size() - printed, stdout);
        std::fflush(stdout);
        printed = text.size();
      }
      return true;
    };
    const fp::GenerateStats st = fp::generate(*session, prompt, g, sampler, out, stream);
    const std::string text = tok.decode(out);
    const fp::LoadInfo load = engine->load_info();
    if (o->json) {
      nlohmann::json j;
      j["model"] = engine->model_name();
      j["backend"] = engine->backend_name();
      j["threads"] = fp::thread_count();
      j["numerics"] = o->engine.numerics;
      j["prompt_tokens"] = st.prompt_tokens;
      j["tokens"] = out;
      j["text"] = text;
      j["generated"] = st.generated;
      j["stopped_at_eos"] = st.stopped;
      j["prefill_s"] = st.prefill_s;
      j["decode_s"] = st.decode_s;
      j["prefill_tps"] = st.prefill_tps();
      j["decode_tps"] = st.decode_tps();
      j["plan"] = load.plan.empty() ? nlohmann::json(nullptr) : nlohmann::json(load.plan);
      j["device"] = engine->device_name();
      j["load"] = {{"source", load.source},
                   {"direct_io", load.direct_io},
                   {"bytes", load.bytes},
                   {"host_bytes", load.host_bytes},
                   {"seconds", load.seconds},
                   {"gib_per_s", load.gib_per_s()}};
      j["mtp"] = {{"draft", o->engine.mtp_draft},
                  {"drafted", st.drafted},
                  {"accepted", st.accepted},
                  {"acceptance", st.acceptance()}};
      const std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      std::printf("%s\n", s.c_str());
      return 0;
    }
    std::printf("\n");
    std::fprintf(stderr, "\n[%s, %d threads] prompt %lld tokens, %.1f tok/s prefill; generated %lld tokens, %.1f tok/s decode",
                 engine->model_name().c_str(), fp::thread_count(), (long long)st.prompt_tokens, st.prefill_tps(),
                 (long long)st.generated, st.decode_tps());
    if (o->engine.mtp_draft > 0)
      std::fprintf(stderr, "; MTP draft %d: %lld/%lld accepted (%.1f%%)", o->engine.mtp_draft, (long long)st.accepted,
                   (long long)st.drafted, 100.0 * st.acceptance());
    std::fprintf(stderr, "\n");
    if (!load.plan.empty()) std::fprintf(stderr, "plan %s\n", load.plan.c_str());
    if (load.source != "mmap")
      std::fprintf(stderr, "weights: %.2f GiB (%.2f GiB in host memory) from %s%s in %.2f s, %.2f GiB/s\n",
                   double(load.bytes) / double(1ull << 30), double(load.host_bytes) / double(1ull << 30),
                   load.source.c_str(), load.source == "file" ? (load.direct_io ? " (direct I/O)" : " (buffered)") : "",
                   load.seconds, load.gib_per_s());
    return 0;
  };
});
