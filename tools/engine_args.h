// Flags shared by the commands that run a model (run, chat, logits; --backend cpu|cuda):
// the model (or the built-in tiny model when none is given), threads, numerics,
// context, prefill chunk and MTP draft length, and the sampling options.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <memory>
#include <string>

#include "ops/core/error.h"
#include "ops/core/parallel.h"
#include "ops/numerics/mode.h"
#include "planner/model/builtin.h"
#include "runtime/cpu/engine.h"
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

  void add(CLI::App& app, bool model_optional) {
    auto* m = app.add_option("model", model, model_optional ? "GGUF model (default: the built-in tiny model)"
                                                            : "GGUF model");
    if (!model_optional) m->required();
    app.add_option("--mtp", mtp_file, "separate MTP GGUF (antirez layout, mtp.0.*)");
    app.add_option("-t,--threads", threads, "CPU threads (default: all)");
    app.add_option("--numerics", numerics, "plain (as transformers) or official (FP8 KV, FP4 indexer)")
        ->check(CLI::IsMember({"plain", "official"}));
    app.add_option("-c,--ctx", ctx, "max context in tokens");
    app.add_option("--chunk", chunk, "prefill chunk: tokens per forward step");
    app.add_option("--backend", backend, "cpu (reference executor) or cuda")->check(CLI::IsMember({"cpu", "cuda"}));
    app.add_flag("--no-graphs", no_graphs, "cuda: run every step eagerly (no CUDA graph replay)");
  }

  void add_mtp(CLI::App& app) {
    app.add_option("--mtp-draft", mtp_draft, "MTP draft tokens per step (0: off); output is identical either way");
  }

  std::unique_ptr<Engine> open() const {
    if (threads < 0) fail("--threads ", threads, ", expected >= 0");
    if (backend == "cuda") {
#ifdef FLASHPLAN_HAVE_CUDA
      if (mtp_draft > 0) fail("--backend cuda: --mtp-draft is not supported yet");
      if (rollback > 0) fail("--backend cuda: sessions cannot roll back yet (use the replay restore)");
      return open_cuda_engine(cuda_args());
#else
      fail("--backend cuda: this flashplan was built without the CUDA backend");
#endif
    }
    if (threads > 0) set_thread_count(threads);
    cpu::CpuOptions o;
    o.numerics = *numerics_from_name(numerics);
    o.max_context = ctx;
    o.max_step = chunk;
    o.mtp_draft = mtp_draft;
    o.min_rollback = rollback;
    ModelOpenOptions mo;
    mo.mtp_path = mtp_file;
    return cpu::CpuEngine::open(model.empty() ? builtin_model_path() : model, o, mo);
  }

  CudaEngineArgs cuda_args() const {
    CudaEngineArgs a;
    a.model = model.empty() ? builtin_model_path() : model;
    a.numerics = *numerics_from_name(numerics);
    a.ctx = ctx;
    a.chunk = chunk;
    a.graphs = !no_graphs;
    return a;
  }
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
