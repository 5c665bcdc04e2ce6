// `flashplan bench [MODEL] --ctx-start 2048 --ctx-max 65536 --step-incr 2048
// --gen-tokens 128 [-o results.csv] [--svg plot.svg] [--json]`: prefill and decode
// speed at growing context frontiers, as ds4-bench measures it (bench_sweep.h says
// exactly what each column is). The prompt is a fixed pseudo-random token sequence
// (--seed), or a text file's tokens (--prompt-file). CSV goes to -o, else to stdout;
// --json prints one object with the rows (and the generated ids) instead.
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "tools/build_commit.h"
#include "ops/core/error.h"
#include "ops/core/parallel.h"
#include "ops/core/text_file.h"
#include "runtime/tokenizer/tokenizer.h"
#include "tools/bench_report.h"
#include "tools/bench_sweep.h"
#include "tools/command.h"
#include "tools/engine_args.h"

namespace {

std::ofstream open_out(const std::string& path, const char* flag) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) fp::fail(path, ": cannot write ", flag);
  return f;
}

}  // namespace

FP_COMMAND("bench", "Prefill/decode tok/s at growing context frontiers (ds4-bench CSV + SVG plot)", [](CLI::App& app) {
  struct Opts {
    fp::cli::EngineArgs engine;
    fp::bench::SweepOptions sweep;
    std::string csv, svg, prompt_file, restore = "auto";
    uint64_t seed = 0;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  o->engine.add(app, true);
  o->engine.add_mtp(app);
  app.add_option("--ctx-start", o->sweep.ctx_start, "first frontier (tokens)")->capture_default_str();
  app.add_option("--ctx-max", o->sweep.ctx_max, "last frontier (tokens)")->capture_default_str();
  app.add_option("--step-incr", o->sweep.step_incr, "frontier step (tokens)")->capture_default_str();
  app.add_option("--step-mul", o->sweep.step_mul, "multiplicative frontier step (> 1 replaces --step-incr)");
  app.add_option("-n,--gen-tokens", o->sweep.gen_tokens, "greedy decode steps per frontier")->capture_default_str();
  app.add_option("-o,--output", o->csv, "write the CSV here (default: stdout)");
  app.add_option("--svg", o->svg, "also draw prefill and generation tok/s against context here");
  app.add_flag("--json", o->json, "print one JSON object (rows with generated ids) instead of CSV on stdout");
  app.add_option("--prompt-file", o->prompt_file, "benchmark the tokens of this text (default: synthetic ids)");
  app.add_option("--seed", o->seed, "seed of the synthetic token ids")->capture_default_str();
  app.add_option("--restore", o->restore,
                 "how a frontier's state comes back after decoding: truncate (roll back), replay (re-prefill), "
                 "auto (truncate when possible)")
      ->check(CLI::IsMember({"auto", "truncate", "replay"}));
  CLI::App* self = &app;
  return [o, self]() {
    auto& sw = o->sweep;
    const bool planned = o->engine.apply_plan() != nullptr;  // the plan's context and MTP depth
    sw.mtp_draft = o->engine.mtp_draft;
    sw.restore = o->restore == "truncate" ? fp::bench::Restore::truncate
                 : o->restore == "replay" ? fp::bench::Restore::replay
                                          : fp::bench::Restore::automatic;
    const std::vector<int64_t> fronts = fp::bench::frontiers(sw);  // checks the flags before any loading
    const int64_t need = fp::bench::needed_context(sw);
    if (self->count("--ctx") == 0 && !planned) o->engine.ctx = need + 1;
    else if (o->engine.ctx < need)
      fp::fail(planned ? "the plan's max context " : "-c/--ctx ", o->engine.ctx,
               ", expected at least --ctx-max + --gen-tokens (", need, ")");
    // Room to roll each frontier's generation back: asked for explicitly by --restore
    // truncate (a backend that cannot says so), and by auto where the backend is known to
    // roll back (the CPU executor); anything else re-prefills.
    const bool ask_rollback = sw.restore == fp::bench::Restore::truncate ||
                              (sw.restore == fp::bench::Restore::automatic && o->engine.backend == "cpu");
    if (ask_rollback && sw.mtp_draft == 0) o->engine.rollback = sw.gen_tokens;

    std::ofstream csv_file, svg_file;
    if (!o->csv.empty()) csv_file = open_out(o->csv, "-o");
    if (!o->svg.empty()) svg_file = open_out(o->svg, "--svg");

    auto engine = o->engine.open();
    const fp::Tokenizer& tok = engine->tokenizer();
    std::vector<int32_t> tokens;
    std::string prompt_desc;
    if (!o->prompt_file.empty()) {
      tokens = tok.encode(fp::read_text_file(o->prompt_file, "--prompt-file", 64u << 20), false);
      if (tok.bos() >= 0) tokens.insert(tokens.begin(), tok.bos());
      prompt_desc = o->prompt_file + " (" + std::to_string(tokens.size()) + " tokens)";
    } else {
      const int64_t vocab = std::min<int64_t>(int64_t(engine->config().n_vocab), int64_t(tok.size()));
      tokens = fp::bench::synthetic_tokens(sw.ctx_max, vocab, tok.bos(), tok.eos(), o->seed);
      prompt_desc = "synthetic ids, seed " + std::to_string(o->seed);
    }

    auto session = engine->new_session();
    fp::bench::check_session(*session, tokens.size(), sw);

    std::string device = engine->device_name();
    if (device.empty() && engine->backend_name() == "cpu")
      device = fp::bench::cpu_model_name() + ", " + std::to_string(fp::thread_count()) + " threads";
    if (device.empty()) device = engine->backend_name();
    const std::string step = sw.step_mul > 1.0 ? "x" + std::to_string(sw.step_mul) : "+" + std::to_string(sw.step_incr);
    const fp::bench::Meta meta = {
        {"model", engine->model_name()},
        {"backend", engine->backend_name()},
        {"device", device},
        {"date", fp::bench::utc_now()},
        {"commit", fp::build_commit()},
        {"flashplan", FLASHPLAN_VERSION},
        {"numerics", o->engine.numerics},
        {"chunk", std::to_string(o->engine.chunk)},
        {"plan", o->engine.plan.empty() ? std::string("(none)") : o->engine.plan},
        {"weights", o->engine.weights},
        {"mtp_draft", std::to_string(sw.mtp_draft)},
        {"prompt", prompt_desc},
        {"ctx_start", std::to_string(sw.ctx_start)},
        {"ctx_max", std::to_string(sw.ctx_max)},
        {"step", step},
        {"gen_tokens", std::to_string(sw.gen_tokens)},
        {"restore", o->restore},
    };

    // CSV lines go to -o, else to stdout (unless --json), each as soon as it exists.
    auto csv_out = [&](auto write) {
      if (csv_file.is_open()) {
        write(csv_file);
      } else if (!o->json) {
        std::ostringstream text;
        write(text);
        std::fputs(text.str().c_str(), stdout);
        std::fflush(stdout);
      }
    };
    csv_out([&](std::ostream& out) { fp::bench::write_csv_head(out, meta); });

    std::vector<fp::bench::Row> rows;
    std::fprintf(stderr, "bench: %s on %s, %zu frontiers %lld..%lld, %lld generated tokens each\n",
                 engine->model_name().c_str(), device.c_str(), fronts.size(), (long long)sw.ctx_start,
                 (long long)sw.ctx_max, (long long)sw.gen_tokens);
    fp::bench::sweep(*session, tokens, sw, [&](const fp::bench::Row& r) {
      rows.push_back(r);
      csv_out([&](std::ostream& out) { fp::bench::write_csv_row(out, r); });
      std::fprintf(stderr,
                   "bench: ctx %lld (+%lld): prefill %.1f tok/s; decode %.2f tok/s, steady %.2f, first step %.4f s; "
                   "kv %.2f MiB\n",
                   (long long)r.ctx_tokens, (long long)r.prefill_tokens, r.prefill_tps, r.gen_tps, r.gen_tps_ss,
                   r.first_token_sec, double(r.kvcache_bytes) / (1 << 20));
    });
    if (csv_file.is_open() && !csv_file) fp::fail(o->csv, ": write failed");
    if (svg_file.is_open()) {
      svg_file << fp::bench::to_svg(meta, rows);
      if (!svg_file) fp::fail(o->svg, ": write failed");
    }
    if (o->json) std::printf("%s\n", fp::bench::to_json(meta, rows).c_str());
    return 0;
  };
});
