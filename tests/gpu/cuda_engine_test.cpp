// The CUDA engine against the CPU reference engine on the HF oracle's tiny model
// (tests/data/hf/seed1, see tests/data/README.md), plain numerics:
//   - greedy tokens byte-identical to the CPU's (and to transformers') on every oracle
//     prompt, with the decode graph and with --no-graphs, in several prefill chunkings;
//   - logits at every prompt position and every greedy step within 1e-4 max abs of the
//     CPU's (the oracle's own CPU-vs-transformers bound);
//   - the residual stream after every layer within 1e-5 relative L2 of the CPU's
//     (node-by-node parity at layer granularity, as `--check-against cpu` reports it);
//   - official numerics: logits within 2e-2 max abs (a 1-ulp difference before an FP8 /
//     FP4 rounding may move one value by a code step; informational bound);
//   - bad input fails with fp::Error, never a crash.
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "planner/memory/cuda_buffers.h"
#include "runtime/cpu/engine.h"
#include "runtime/cuda/engine.h"
#include "runtime/generate/generate.h"
#include "tests/gpu/ops_util.h"

using namespace fp;
using nlohmann::json;

namespace {

const std::string kDir = std::string(FLASHPLAN_TEST_DATA) + "/hf/seed1/";

const json& oracle() {
  static const json j = [] {
    std::ifstream f(kDir + "oracle.json");
    REQUIRE(f.good());
    return json::parse(f);
  }();
  return j;
}

std::string model_path() { return kDir + oracle()["gguf"]["file"].get<std::string>(); }

std::unique_ptr<cpu::CpuEngine> cpu_engine(int64_t chunk, Numerics num = Numerics::plain) {
  cpu::CpuOptions o;
  o.numerics = num;
  o.max_context = 1024;
  o.max_step = chunk;
  return cpu::CpuEngine::open(model_path(), o);
}

std::unique_ptr<cuda::CudaEngine> cuda_engine(int64_t chunk, bool graphs, Numerics num = Numerics::plain) {
  cuda::CudaOptions o;
  o.numerics = num;
  o.max_context = 1024;
  o.max_step = chunk;
  o.graphs = graphs;
  return cuda::CudaEngine::open(model_path(), o);
}

std::vector<int32_t> greedy(Engine& e, const std::vector<int32_t>& prompt, int64_t n, std::vector<float>* step_logits,
                            cuda::Executor** exec_out = nullptr) {
  auto s = e.new_session();
  if (exec_out) *exec_out = &dynamic_cast<cuda::CudaSession&>(*s).executor();
  std::vector<int32_t> out;
  auto logits = s->append(prompt);
  for (int64_t i = 0; i < n; ++i) {
    if (step_logits) step_logits->insert(step_logits->end(), logits.begin(), logits.end());
    const int32_t tok = argmax_token(logits);
    out.push_back(tok);
    if (i + 1 < n) logits = s->append(std::span<const int32_t>(&tok, 1));
  }
  return out;
}

double max_abs(const std::vector<float>& a, const std::vector<float>& b) {
  const auto d = test::diff(a, b);
  return d.finite ? d.max_abs : INFINITY;
}

}  // namespace

TEST_CASE("cuda engine: greedy tokens identical to the CPU and transformers, graphs on and off") {
  const json& prompts = oracle()["prompts"];
  auto cpu = cpu_engine(256);
  for (int64_t chunk : {256, 7}) {
    for (bool graphs : {true, false}) {
      auto gpu = cuda_engine(chunk, graphs);
      for (const auto& p : prompts) {
        CAPTURE(p["name"].get<std::string>());
        CAPTURE(chunk);
        CAPTURE(graphs);
        const auto ids = p["ids"].get<std::vector<int32_t>>();
        const auto want = p["greedy"]["tokens"].get<std::vector<int32_t>>();
        const int64_t n = int64_t(want.size());
        std::vector<float> lc, lg;
        const auto tc = greedy(*cpu, ids, n, &lc);
        cuda::Executor* ex = nullptr;
        const auto tg = greedy(*gpu, ids, n, &lg, &ex);
        CHECK(tc == want);
        CHECK(tg == tc);
        const double d = max_abs(lg, lc);
        MESSAGE(p["name"].get<std::string>(), " chunk ", chunk, std::string(graphs ? " graphs" : " eager"),
                ": greedy step logits max |cuda - cpu| = ", d, ", graph launches ", ex->graph_launches());
        CHECK(d <= 1e-4);
        // The first one-token step with logits runs eagerly (it may be the prompt's last
        // chunk); every later decode step replays the graph (repeated prefill chunks too).
        if (graphs) CHECK(ex->graph_launches() >= n - 2);
        if (!graphs) CHECK(ex->graph_launches() == 0);
      }
    }
  }
}

TEST_CASE("cuda engine: prompt logits at every position and layer-by-layer streams match the CPU") {
  const json& prompts = oracle()["prompts"];
  for (const auto& p : prompts) {
    CAPTURE(p["name"].get<std::string>());
    const auto ids = p["ids"].get<std::vector<int32_t>>();
    const int64_t n = int64_t(ids.size());
    auto cpu = cpu_engine(n);
    auto gpu = cuda_engine(n, true);
    auto sc = cpu->new_session();
    auto sg = gpu->new_session();
    auto& cex = dynamic_cast<cpu::CpuSession&>(*sc).executor();
    auto& gex = dynamic_cast<cuda::CudaSession&>(*sg).executor();
    cex.stream_trace.enabled = true;
    gex.trace.enabled = true;
    const auto lc = sc->append_all(ids);
    const auto lg = sg->append_all(ids);
    const std::vector<float> vc(lc.begin(), lc.end()), vg(lg.begin(), lg.end());
    const double d = max_abs(vg, vc);
    MESSAGE(p["name"].get<std::string>(), ": prompt logits max |cuda - cpu| = ", d);
    CHECK(d <= 1e-4);
    REQUIRE(gex.trace.after_layer.size() == cex.stream_trace.after_layer.size());
    for (size_t l = 0; l < gex.trace.after_layer.size(); ++l) {
      CAPTURE(l);
      test::check_close("stream after layer", gex.trace.after_layer[l], cex.stream_trace.after_layer[l], {1e-5, 1e-3});
    }
    test::check_close("final hidden", gex.trace.final_hidden, cex.stream_trace.final_hidden, {1e-5, 1e-3});
  }
}

TEST_CASE("cuda engine: official numerics stay close to the CPU") {
  const json& p = oracle()["prompts"][1];
  const auto ids = p["ids"].get<std::vector<int32_t>>();
  auto cpu = cpu_engine(64, Numerics::official);
  auto gpu = cuda_engine(64, true, Numerics::official);
  std::vector<float> lc, lg;
  const auto tc = greedy(*cpu, ids, 8, &lc);
  const auto tg = greedy(*gpu, ids, 8, &lg);
  const double d = max_abs(lg, lc);
  MESSAGE("official numerics: step logits max |cuda - cpu| = ", d, ", greedy tokens ",
          std::string(tc == tg ? "identical" : "differ"));
  CHECK(d <= 2e-2);
}

TEST_CASE("cuda engine: bad tokens and a full context fail with fp::Error") {
  cuda::CudaOptions o;
  o.max_context = 40;
  o.max_step = 16;
  auto gpu = cuda::CudaEngine::open(model_path(), o);
  auto s = gpu->new_session();
  const std::vector<int32_t> bad{1, 2, 100000};
  CHECK_THROWS_AS(s->append(bad), fp::Error);
  std::vector<int32_t> many(41, 3);
  auto s2 = gpu->new_session();
  CHECK_THROWS_AS(s2->append(many), fp::Error);
  auto s3 = gpu->new_session();
  std::vector<int32_t> ok(40, 3);
  CHECK_NOTHROW(s3->append(ok));
}

// The workload tests/gpu/sanitizer_test.sh runs under compute-sanitizer memcheck: the
// tiny model's full forward pass, prefill in several chunks (every layer kind, the
// compressors emitting, the indexer selecting) and decode through the captured graph
// and eagerly. Also a plain test: its tokens must equal the CPU's.
TEST_CASE("cuda engine: chunked prefill then decode (sanitizer workload)") {
  const json& p = oracle()["prompts"][1];
  const auto ids = p["ids"].get<std::vector<int32_t>>();
  auto cpu = cpu_engine(16);
  const auto want = greedy(*cpu, ids, 6, nullptr);
  for (bool graphs : {true, false}) {
    CAPTURE(graphs);
    auto gpu = cuda_engine(16, graphs);
    CHECK(greedy(*gpu, ids, 6, nullptr) == want);
  }
}

TEST_CASE("cuda engine: a step longer than the indexer's tile (256 tokens) matches the CPU") {
  // 700 prompt tokens in one step: the indexer runs tiles of 256, 256 and 188 tokens.
  std::vector<int32_t> ids(700);
  uint64_t x = 20261207;
  for (auto& t : ids) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    t = int32_t((x >> 33) % 300) + 3;  // the tiny vocabulary has 320 ids
  }
  auto cpu = cpu_engine(700);
  auto gpu = cuda_engine(700, true);
  std::vector<float> lc, lg;
  const auto tc = greedy(*cpu, ids, 4, &lc);
  const auto tg = greedy(*gpu, ids, 4, &lg);
  const double d = max_abs(lg, lc);
  MESSAGE("700-token step: step logits max |cuda - cpu| = ", d);
  CHECK(d <= 1e-4);
  CHECK(tc == tg);
}

TEST_CASE("cuda engine: the executor allocates exactly the planner's buffer table") {
  for (int64_t chunk : {1, 7, 300}) {
    CAPTURE(chunk);
    auto gpu = cuda_engine(chunk, true);
    auto s = gpu->new_session();
    auto& ex = dynamic_cast<cuda::CudaSession&>(*s).executor();
    CudaBufferOptions bo;
    bo.max_step = chunk;
    bo.max_context = 1024;
    const CudaBuffers b = cuda_buffers(gpu->config(), bo);
    CHECK(ex.device_bytes() == b.total_bytes());
    CHECK(ex.state_bytes() == b.state_bytes());
  }
}

// Oracle prompt 1 and two sessions of one engine (16-token chunks, graphs on): `plain`
// runs unprofiled, `profiled` is the one whose executor (`ex`) profiles.
struct ProfiledSessions {
  std::vector<int32_t> ids = oracle()["prompts"][1]["ids"].get<std::vector<int32_t>>();
  std::unique_ptr<cuda::CudaEngine> gpu = cuda_engine(16, true);
  std::unique_ptr<Session> plain = gpu->new_session(), profiled = gpu->new_session();
  cuda::Executor& ex = dynamic_cast<cuda::CudaSession&>(*profiled).executor();
};

double max_abs_diff(std::span<const float> a, std::span<const float> b) {
  return max_abs(std::vector<float>(a.begin(), a.end()), std::vector<float>(b.begin(), b.end()));
}

TEST_CASE("cuda engine: a profiled step times every node it launches and computes what an unprofiled one does") {
  ProfiledSessions f;
  const auto& ids = f.ids;
  const auto& gpu = f.gpu;
  auto& ex = f.ex;
  const auto want = f.plain->append(ids);
  ex.profile.enabled = true;
  CHECK(max_abs_diff(f.profiled->append(ids), want) == 0.0);
  ex.profile.enabled = false;
  // One eager step without a plan launches: embedding, per layer the planned ops, the head.
  const auto& nodes = ex.profile.nodes;
  REQUIRE(nodes.size() > size_t(3 * gpu->config().n_layer));
  CHECK(ex.last_step().eager_nodes == int64_t(nodes.size()));
  CHECK(nodes.front().op == OpKind::embed);
  double total = 0;
  int32_t last_layer = -1;
  for (const auto& n : nodes) {
    CHECK(n.us > 0);
    CHECK(n.us < 1e6);
    if (n.layer >= 0) {
      CHECK(n.layer >= last_layer);  // layers in order
      last_layer = n.layer;
    }
    total += n.us;
  }
  CHECK(last_layer == int32_t(gpu->config().n_layer) - 1);
  MESSAGE("profiled prefill of ", ids.size(), " tokens: ", nodes.size(), " nodes, ", total, " us");
  // The next step of either session is unprofiled and replays nothing stale.
  const int32_t tok = argmax_token(want);
  const auto a = f.plain->append(std::span<const int32_t>(&tok, 1));
  CHECK(max_abs_diff(a, f.profiled->append(std::span<const int32_t>(&tok, 1))) == 0.0);
}

TEST_CASE("cuda engine: a step profiled inside its graph times the same nodes and computes the same logits") {
  ProfiledSessions f;
  {  // Refused before the step shape has run once (its launchers' set-up cannot be captured).
    auto fresh = f.gpu->new_session();
    auto& ex = dynamic_cast<cuda::CudaSession&>(*fresh).executor();
    ex.profile.enabled = ex.profile.in_graph = true;
    CHECK_THROWS_WITH(fresh->append(f.ids), doctest::Contains("has not run yet"));
  }
  const auto want = f.plain->append(f.ids);
  CHECK(max_abs_diff(f.profiled->append(f.ids), want) == 0.0);  // the shape's first run, eager
  const int32_t tok = argmax_token(want);
  const auto a = f.plain->append(std::span<const int32_t>(&tok, 1));
  (void)f.profiled->append(std::span<const int32_t>(&tok, 1));  // the one-token shape's first run
  // The next one-token step of each: plain replays or captures; profiled captures with events.
  const int32_t tok2 = argmax_token(a);
  const auto b_plain = f.plain->append(std::span<const int32_t>(&tok2, 1));
  f.ex.profile.enabled = f.ex.profile.in_graph = true;
  const auto b_prof = f.profiled->append(std::span<const int32_t>(&tok2, 1));
  f.ex.profile.enabled = f.ex.profile.in_graph = false;
  CHECK(max_abs_diff(b_prof, b_plain) == 0.0);
  const auto& nodes = f.ex.profile.nodes;
  REQUIRE(nodes.size() > size_t(3 * f.gpu->config().n_layer));
  CHECK(f.ex.last_step().graph_launches >= 1);
  double total = 0;
  for (const auto& n : nodes) {
    CHECK(n.us >= 0);
    CHECK(n.us < 1e6);
    total += n.us;
  }
  CHECK(total > 0);
  MESSAGE("one-token step profiled in its graph: ", nodes.size(), " nodes, ", total, " us");
  // Later steps of the profiled session run as before (its own capture was dropped).
  const int32_t tok3 = argmax_token(b_plain);
  const auto c_plain = f.plain->append(std::span<const int32_t>(&tok3, 1));
  CHECK(max_abs_diff(f.profiled->append(std::span<const int32_t>(&tok3, 1)), c_plain) == 0.0);
}
