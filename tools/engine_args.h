// Flags shared by the commands that run a model (run, chat, logits, bench, proof, serve;
// --backend cpu|cuda): the model (or the built-in tiny model when none is given), threads,
// numerics, context, prefill chunk and MTP draft length, a compiled plan, where the
// weights come from, and the sampling options.
//
// --plan PLAN fixes numerics, max context, the prefill chunk (its largest prefill bucket;
// --chunk may ask for a smaller one), the MTP depth (--mtp-draft 0 turns MTP off) and the
// backend (its device's). A flag given explicitly that says otherwise is an error naming
// both values; flags left out take the plan's values. The engines then refuse the plan
// for another model, MTP file or device (runtime/plan/plan_binding.h).
#pragma once
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "ops/core/error.h"
#include "ops/core/parallel.h"
#include "ops/numerics/mode.h"
#include "planner/model/builtin.h"
#include "planner/plan_io/plan_io.h"
#include "runtime/cpu/engine.h"
#include "runtime/plan/plan_binding.h"
#include "runtime/sampling/sampler.h"
#include "tools/cuda_backend.h"  // CUDA-free declarations; defined only in CUDA builds

namespace fp::cli {

struct EngineArgs {
  std::string model;        // empty: the built-in model
  std::string mtp_file;     // antirez separate MTP GGUF
  int threads = 0;          // 0: all hardware threads
  std::string numerics = "plain";
  int64_t ctx = 4096;
  int64_t chunk = 256;
  int mtp_draft = 0;
  int64_t rollback = 0;     // positions a session must be able to truncate() back (bench sets it)
  std::string backend = "cpu";
  bool no_graphs = false;   // cuda: run decode steps eagerly instead of replaying a graph
  bool host_sampling = false;  // cuda: copy the logits and sample on the host (default: on the device)
  std::string plan;         // compiled plan (empty: none)
  std::string weights = "file";  // "file" or "random:SEED" (cuda)

  // Which flags the command line gave (set while parsing; a plan may fill the others).
  struct Given {
    bool numerics = false, ctx = false, chunk = false, backend = false, mtp_draft = false;
  } given;

  void add(CLI::App& app, bool model_optional) {
    auto* m = app.add_option("model", model, model_optional ? "GGUF model (default: the built-in tiny model)"
                                                            : "GGUF model");
    if (!model_optional) m->required();
    app.add_option("--mtp", mtp_file, "separate MTP GGUF (antirez layout, mtp.0.*)");
    app.add_option("-t,--threads", threads, "CPU threads (default: all)");
    app.add_option("--numerics", numerics, "plain (as transformers) or official (FP8 KV, FP4 indexer); a plan fixes it")
        ->check(CLI::IsMember({"plain", "official"}))
        ->each([this](const std::string&) { given.numerics = true; });
    app.add_option("-c,--ctx", ctx, "max context in tokens; a plan fixes it")
        ->each([this](const std::string&) { given.ctx = true; });
    app.add_option("--chunk", chunk, "prefill chunk: tokens per forward step (a plan: its largest prefill bucket, or less)")
        ->each([this](const std::string&) { given.chunk = true; });
    app.add_option("--backend", backend, "cpu (reference executor) or cuda; a plan: its device's backend")
        ->check(CLI::IsMember({"cpu", "cuda"}))
        ->each([this](const std::string&) { given.backend = true; });
    app.add_flag("--no-graphs", no_graphs, "cuda: run every step eagerly (no CUDA graph replay)");
    app.add_flag("--host-sampling", host_sampling, "cuda: copy each step's logits and sample on the host (default: on the device)");
    app.add_option("--plan", plan,
                   "run a plan compiled for this model and device (`flashplan compile`): numerics, context, prefill "
                   "buckets, MTP depth, kernels and weight placement come from it; the cpu backend runs plans "
                   "compiled for a cpu profile");
    app.add_option("--weights", weights,
                   "file (read the GGUF's tensors) or random:SEED (cuda: fill every planned tensor with valid random "
                   "blocks on the device, no weight bytes read; a header-only GGUF is enough)");
  }

  void add_mtp(CLI::App& app) {
    has_mtp_flag_ = true;
    app.add_option("--mtp-draft", mtp_draft, "MTP draft tokens per step (0: off); output is identical either way; "
                                             "a plan fixes the depth")
        ->each([this](const std::string&) { given.mtp_draft = true; });
  }

  // Loads --plan (once) and takes its settings into these flags, refusing explicitly
  // given flags that contradict it. Commands that read the flags before open() (bench)
  // call it first; open() calls it too. Returns null without --plan.
  std::shared_ptr<const LoadedPlan> apply_plan() {
    if (plan.empty() || loaded_) return loaded_;
    auto p = std::make_shared<LoadedPlan>(load_plan(plan));
    const PlanSettings s = plan_settings(*p);
    auto contra = [&](const std::string& flag, const std::string& given_v, const std::string& what,
                      const std::string& plan_v) {
      fail(flag, " ", given_v, " contradicts the plan ", plan, ": it fixes ", what, " ", plan_v,
           " (leave the flag out, or compile another plan)");
    };
    const std::string pb = backend_name(s.backend);
    if (given.backend && backend != pb)
      fail("--backend ", backend, " contradicts the plan ", plan, ": it is compiled for device ", s.device, " on the ", pb,
           " backend (leave the flag out, or compile another plan)");
    backend = pb;
    const std::string pn = numerics_name(s.numerics);
    if (given.numerics && numerics != pn) contra("--numerics", numerics, "numerics", pn);
    numerics = pn;
    if (given.ctx && uint64_t(ctx) != s.max_context)
      contra("-c/--ctx", std::to_string(ctx), "the max context to", std::to_string(s.max_context));
    ctx = int64_t(s.max_context);
    if (given.chunk && (chunk < 1 || uint64_t(chunk) > s.max_step))
      contra("--chunk", std::to_string(chunk), "prefill buckets up to", std::to_string(s.max_step) + " tokens per step");
    if (!given.chunk) chunk = s.max_step;
    if (given.mtp_draft && mtp_draft != 0 && uint32_t(mtp_draft) != s.mtp_depth)
      contra("--mtp-draft", std::to_string(mtp_draft), "the MTP depth to",
             std::to_string(s.mtp_depth) + (s.mtp_depth ? " (--mtp-draft 0 turns MTP off)" : " (no MTP phases)"));
    // MTP drafting runs on the CPU executor only; commands without --mtp-draft do not draft.
    if (!given.mtp_draft) mtp_draft = has_mtp_flag_ && backend == "cpu" ? int(s.mtp_depth) : 0;
    loaded_ = p;
    return loaded_;
  }

  // The seed of --weights random:SEED, or nullopt for --weights file.
  std::optional<uint64_t> random_seed() const {
    if (weights == "file") return std::nullopt;
    const std::string pre = "random:";
    if (weights.rfind(pre, 0) == 0 && weights.size() > pre.size()) {
      const std::string v = weights.substr(pre.size());
      if (v.find_first_not_of("0123456789") == std::string::npos && v.size() <= 19) return std::stoull(v);
    }
    fail("--weights ", weights, ": expected file or random:SEED (SEED a non-negative integer)");
  }

  std::unique_ptr<Engine> open() {
    if (threads < 0) fail("--threads ", threads, ", expected >= 0");
    const auto p = apply_plan();
    const auto seed = random_seed();
    if (backend == "cuda") {
#ifdef FLASHPLAN_HAVE_CUDA
      if (mtp_draft > 0) fail("--backend cuda: --mtp-draft is not supported yet");
      if (rollback > 0) fail("--backend cuda: sessions cannot roll back yet (use the replay restore)");
      return open_cuda_engine(cuda_args());
#else
      fail("--backend cuda: this flashplan was built without the CUDA backend");
#endif
    }
    if (seed) fail("--weights ", weights, ": random weights are filled on the GPU (--backend cuda); the CPU "
                   "reference executor reads the GGUF's tensors");
    if (threads > 0) set_thread_count(threads);
    cpu::CpuOptions o;
    o.numerics = *numerics_from_name(numerics);
    o.max_context = ctx;
    o.max_step = chunk;
    o.mtp_draft = mtp_draft;
    o.min_rollback = rollback;
    o.plan = p;
    ModelOpenOptions mo;
    mo.mtp_path = mtp_file;
    return cpu::CpuEngine::open(model.empty() ? builtin_model_path() : model, o, mo);
  }

  CudaEngineArgs cuda_args() {
    CudaEngineArgs a;
    a.plan = apply_plan();
    a.model = model.empty() ? builtin_model_path() : model;
    a.mtp_file = mtp_file;
    a.numerics = *numerics_from_name(numerics);
    a.ctx = ctx;
    a.chunk = chunk;
    a.graphs = !no_graphs;
    a.host_sampling = host_sampling;
    a.random_seed = random_seed();
    a.progress = isatty(STDERR_FILENO) != 0;
    return a;
  }

 private:
  bool has_mtp_flag_ = false;
  std::shared_ptr<const LoadedPlan> loaded_;
};

struct SamplingArgs {
  SamplerOptions s;
  int64_t max_tokens = 64;

  void add(CLI::App& app, int64_t default_tokens) {
    max_tokens = default_tokens;
    app.add_option("-n,--n-predict", max_tokens, "tokens to generate");
    app.add_option("--temp", s.temperature, "temperature (0: greedy)");
    app.add_option("--seed", s.seed, "sampling seed (same seed, same tokens)");
    app.add_option("--top-k", s.top_k, "keep the k most likely tokens (0: off)");
    app.add_option("--top-p", s.top_p, "nucleus sampling mass (1: off)");
    app.add_option("--min-p", s.min_p, "drop tokens below min-p x the top probability (0: off)");
  }
};

}  // namespace fp::cli
