// `flashplan profile [MODEL] --backend cuda [--plan PLAN] [--weights random:SEED]
// [--ctx-tokens 512] [--in-graph] [-o nodes.csv]`: where a step's GPU time goes. Prefills a
// fixed pseudo-random sequence to the context asked, times replayed decode steps (graphs, as
// `run` decodes), then runs one decode step and one full prefill chunk with a CUDA event
// before each node (Executor::profile) and prints the time per op kind, per product weight
// type (with GB/s over the weight bytes a dense product reads) and the slowest nodes. The
// profiled steps run eagerly, or with --in-graph captured with their events and run from
// the graph (after one unprofiled chunk, so that the chunk's step shape has run once).
// -o writes every profiled node as CSV; its header names the context, the chunk and the
// timing (eager or graph).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ops/core/error.h"
#include "ops/quant/types.h"
#include "planner/graph/op_kind.h"
#include "runtime/cuda/engine.h"
#include "runtime/sampling/sampler.h"
#include "tools/bench_sweep.h"
#include "tools/build_commit.h"
#include "tools/command.h"
#include "tools/engine_args.h"

namespace {

using fp::cuda::Executor;

// Weight bytes a node reads when it is a dense product over its whole first weight (a
// paired matmul: both, of one type and shape); 0 for the others (an MoE node reads only
// the routed experts' slices). A pair is listed under its first weight's name.
double dense_weight_bytes(const Executor::NodeTime& t) {
  if (t.weight.empty() || t.experts > 1) return 0;
  if (t.op != fp::OpKind::matmul && t.op != fp::OpKind::grouped_matmul) return 0;
  return double(t.products) * double(t.rows) * double(fp::row_bytes(t.type, t.cols));
}

void print_step(const char* what, const std::vector<Executor::NodeTime>& nodes, size_t top) {
  double total = 0;
  for (const auto& t : nodes) total += t.us;
  std::printf("\n== %s: %zu nodes, %.1f us by events\n", what, nodes.size(), total);
  struct Sum {
    int n = 0;
    double us = 0, bytes = 0;
  };
  std::map<std::string, Sum> by_op, by_type;
  for (const auto& t : nodes) {
    auto& s = by_op[fp::op_kind_name(t.op)];
    ++s.n, s.us += t.us;
    if (!t.weight.empty() && (t.op == fp::OpKind::matmul || t.op == fp::OpKind::grouped_matmul)) {
      auto& p = by_type[std::string(fp::dtype_name(t.type)) + (t.experts > 1 ? " (grouped)" : "")];
      ++p.n, p.us += t.us, p.bytes += dense_weight_bytes(t);
    }
  }
  std::vector<std::pair<std::string, Sum>> ops(by_op.begin(), by_op.end());
  std::sort(ops.begin(), ops.end(), [](const auto& a, const auto& b) { return a.second.us > b.second.us; });
  std::printf("%-20s %6s %10s %6s %9s\n", "op", "nodes", "us", "%", "us/node");
  for (const auto& [k, s] : ops)
    std::printf("%-20s %6d %10.1f %6.1f %9.2f\n", k.c_str(), s.n, s.us, 100 * s.us / total, s.us / s.n);
  std::printf("%-20s %6s %10s %10s %8s   (matmul/grouped_matmul by weight type)\n", "type", "nodes", "us", "GB read",
              "GB/s");
  for (const auto& [k, s] : by_type)
    std::printf("%-20s %6d %10.1f %10.3f %8.0f\n", k.c_str(), s.n, s.us, s.bytes / 1e9, s.us > 0 ? s.bytes / s.us / 1e3 : 0);
  std::vector<size_t> idx(nodes.size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return nodes[a].us > nodes[b].us; });
  std::printf("slowest nodes:\n");
  for (size_t k = 0; k < std::min(top, idx.size()); ++k) {
    const auto& t = nodes[idx[k]];
    const std::string w = t.products > 1 ? t.weight + " (pair)" : t.weight;
    std::printf("  #%-5zu %-16s layer %3d %-28s %9.1f us\n", idx[k], fp::op_kind_name(t.op), t.layer, w.c_str(), t.us);
  }
}

void write_csv(std::ofstream& f, const char* phase, const std::vector<Executor::NodeTime>& nodes) {
  for (size_t i = 0; i < nodes.size(); ++i) {
    const auto& t = nodes[i];
    f << phase << ',' << i << ',' << fp::op_kind_name(t.op) << ',' << t.layer << ',' << t.weight << ','
      << (t.weight.empty() ? "" : fp::dtype_name(t.type)) << ',' << t.rows << ',' << t.cols << ',' << t.experts << ','
      << t.us << ',' << dense_weight_bytes(t) << '\n';
  }
}

}  // namespace

FP_COMMAND("profile", "Where a CUDA step's time goes: per-node GPU time of one decode step and one prefill chunk",
           [](CLI::App& app) {
  struct Opts {
    fp::cli::EngineArgs engine;
    int64_t ctx_tokens = 512, decode_steps = 32;
    size_t top = 15;
    bool in_graph = false;
    std::string csv;
    uint64_t seed = 0;
  };
  auto o = std::make_shared<Opts>();
  o->engine.add(app, true);
  app.add_option("--ctx-tokens", o->ctx_tokens, "tokens prefilled before the profiled steps")->capture_default_str();
  app.add_option("--decode-steps", o->decode_steps, "replayed decode steps timed (graphs)")->capture_default_str();
  app.add_option("--top", o->top, "slowest nodes listed per step")->capture_default_str();
  app.add_option("-o,--output", o->csv, "write every profiled node as CSV here");
  app.add_option("--seed", o->seed, "seed of the synthetic token ids")->capture_default_str();
  app.add_flag("--in-graph", o->in_graph,
               "time the profiled steps inside captured graphs (event nodes; PDL off), as a replayed step runs, "
               "instead of eagerly (where a one-token step is bound by the host's launches)");
  return [o]() -> int {
    o->engine.apply_plan();  // a plan sets the backend
    if (o->engine.backend != "cuda") fp::fail("profile: times CUDA kernels; pass --backend cuda (or a CUDA plan)");
    if (o->ctx_tokens < 1 || o->decode_steps < 1)
      fp::fail("profile: --ctx-tokens ", o->ctx_tokens, " and --decode-steps ", o->decode_steps, ": expected >= 1");
    const int64_t chunks = o->in_graph ? 2 : 1;  // in the graph: one unprofiled chunk first
    const int64_t need = o->ctx_tokens + o->decode_steps + 3 + chunks * o->engine.chunk;
    if (need > o->engine.ctx)
      fp::fail("profile: --ctx-tokens ", o->ctx_tokens, " + ", o->decode_steps + 3, " decode steps + ", chunks, " x a ",
               o->engine.chunk, "-token chunk = ", need, " positions, the context holds ", o->engine.ctx,
               " (raise --ctx or lower --ctx-tokens)");
    auto engine = o->engine.open();
    auto session = engine->new_session();
    auto* cs = dynamic_cast<fp::cuda::CudaSession*>(session.get());
    if (!cs) fp::fail("profile: the engine is not the CUDA backend");
    const auto& cfg = engine->config();
    const auto ids = fp::bench::synthetic_tokens(o->ctx_tokens + chunks * o->engine.chunk, int64_t(cfg.n_vocab),
                                                 int32_t(cfg.bos_id), int32_t(cfg.eos_id), o->seed);
    std::printf("flashplan profile, %s, %s, %s\n", fp::build_commit(), engine->device_name().c_str(),
                engine->model_name().c_str());
    using clock = std::chrono::steady_clock;
    auto t0 = clock::now();
    session->append(std::span(ids.data(), size_t(o->ctx_tokens)));
    const double prefill_s = std::chrono::duration<double>(clock::now() - t0).count();
    fp::SamplerOptions so;  // greedy
    fp::Sampler sampler(so);
    int32_t tok = ids.back();
    for (int i = 0; i < 2; ++i) tok = session->append_sample(std::span(&tok, 1), sampler);  // eager, capture
    t0 = clock::now();
    for (int64_t i = 0; i < o->decode_steps; ++i) tok = session->append_sample(std::span(&tok, 1), sampler);
    const double decode_s = std::chrono::duration<double>(clock::now() - t0).count();
    std::printf("prefill %lld tokens in %.3f s (%.0f tok/s, the first chunk's setup included); decode (graphs) "
                "%.1f us/step = %.1f tok/s over %lld steps at context %lld\n",
                (long long)o->ctx_tokens, prefill_s, o->ctx_tokens / prefill_s, 1e6 * decode_s / o->decode_steps,
                o->decode_steps / decode_s, (long long)o->decode_steps, (long long)o->ctx_tokens);

    auto& prof = cs->executor().profile;
    prof.in_graph = o->in_graph;
    prof.enabled = true;
    session->append_sample(std::span(&tok, 1), sampler);
    const auto decode_nodes = prof.nodes;
    if (o->in_graph) {  // the chunk's step shape runs once, unprofiled, before it is captured
      prof.enabled = false;
      session->append(std::span(ids.data() + o->ctx_tokens, size_t(o->engine.chunk)));
      prof.enabled = true;
    }
    const int64_t chunk0 = o->ctx_tokens + (chunks - 1) * o->engine.chunk;  // the profiled chunk's first id
    session->append(std::span(ids.data() + chunk0, size_t(o->engine.chunk)));
    const auto prefill_nodes = prof.nodes;
    prof.enabled = prof.in_graph = false;

    const std::string timing = o->in_graph ? "graph" : "eager";
    print_step(("decode step (" + timing + ", events)").c_str(), decode_nodes, o->top);
    const std::string chunk =
        "prefill chunk of " + std::to_string(o->engine.chunk) + " tokens (" + timing + ", events)";
    print_step(chunk.c_str(), prefill_nodes, o->top);
    if (!o->csv.empty()) {
      std::ofstream f(o->csv, std::ios::binary | std::ios::trunc);
      if (!f) fp::fail(o->csv, ": cannot write -o");
      f << "# flashplan profile, " << fp::build_commit() << ", " << engine->device_name() << ", "
        << engine->model_name() << ", context " << o->ctx_tokens << ", chunk " << o->engine.chunk << ", timing "
        << timing << "\n";
      f << "phase,node,op,layer,weight,type,rows,cols,experts,us,dense_weight_bytes\n";
      write_csv(f, "decode", decode_nodes);
      write_csv(f, "prefill", prefill_nodes);
    }
    return 0;
  };
});
