// The device sampler (ops/sample: cuda::sample_row) against the CPU reference
// (fp::sample_token) on random rows of several vocabulary sizes (DS4's 129280 included)
// and shapes (flat, normal, peaked, many exact ties, -inf entries, NaN entries, +inf
// entries, only NaN, only -inf), over many seeds and option combinations.
//   - Each draw's token equals the CPU's for the same state, except where the CPU's
//     trace puts a decision within kTol weight units of flipping (exp() may differ in
//     its last bit between host and device, which moves a fixed-point weight by at most
//     one unit). Those near-boundary draws are counted and printed; the bound: no
//     mismatch outside them, and at most 1 mismatch in 1000 draws. Rows whose weights
//     are all exact (only +inf / -inf / NaN decide them: 2^shift or 0, no exp) must
//     match on every draw, boundary or not.
//   - The device RNG state after every draw equals the host's (one draw per sampled
//     token, none when greedy).
//   - Captured in a CUDA graph and replayed, the same tokens and state.
// And on the engine (tests/data/hf/seed1's tiny model): append_sample on the device
// gives the tokens of host sampling over the same session's logits, greedy and sampled,
// with the decode graph and without.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <limits>
#include <random>
#include <set>

#include "ops/sample/sample.h"
#include "ops/sample/sample_cuda.h"
#include "runtime/cuda/engine.h"
#include "runtime/sampling/sampler.h"
#include "tests/gpu/ops_util.h"

using namespace fp;
using namespace fp::test;

namespace {

constexpr uint64_t kTol = 1024;  // weight units: 2^-36 of the top weight at V = 129280

enum class Shape { flat, normal, peaked, ties, neg_inf, nan, pos_inf, all_nan, all_neg_inf };
const char* shape_name(Shape s) {
  const char* n[] = {"flat", "normal", "peaked", "ties", "-inf", "nan", "+inf", "all nan", "all -inf"};
  return n[int(s)];
}

std::vector<float> make_row(int64_t V, Shape s, std::mt19937_64& rng) {
  std::vector<float> l = randn(size_t(V), rng, s == Shape::flat ? 0.01f : 3.0f);
  std::uniform_int_distribution<int64_t> pick(0, V - 1);
  std::uniform_real_distribution<double> u(0, 1);
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  switch (s) {
    case Shape::flat:
    case Shape::normal: break;
    case Shape::peaked:
      for (int i = 0; i < 3; ++i) l[size_t(pick(rng))] = 25.0f + float(i);
      break;
    case Shape::ties:
      for (auto& x : l) x = std::round(x) * 0.5f + 0.25f;  // a dozen distinct values, never 0
      break;
    case Shape::neg_inf:
      for (auto& x : l)
        if (u(rng) < 0.3) x = -inf;
      break;
    case Shape::nan:
      for (auto& x : l)
        if (u(rng) < 0.1) x = nan;
      l[0] = nan;
      break;
    case Shape::pos_inf:
      l[size_t(pick(rng))] = inf;
      l[size_t(pick(rng))] = inf;
      break;
    case Shape::all_nan:
      for (auto& x : l) x = nan;
      break;
    case Shape::all_neg_inf:
      for (auto& x : l) x = -inf;
      break;
  }
  return l;
}

SampleParams random_params(int64_t V, std::mt19937_64& rng) {
  const float temps[] = {0.0f, 0.3f, 0.8f, 1.0f, 2.5f};
  const int32_t ks[] = {0, 0, 1, 40, int32_t(V), int32_t(V) + 5};
  const float ps[] = {1.0f, 1.0f, 0.95f, 0.5f, 0.05f};
  const float mins[] = {0.0f, 0.0f, 0.05f, 0.3f};
  auto any = [&](auto& a) { return a[std::uniform_int_distribution<size_t>(0, std::size(a) - 1)(rng)]; };
  SampleParams p;
  p.temperature = any(temps);
  p.top_k = any(ks);
  p.top_p = any(ps);
  p.min_p = any(mins);
  return p;
}

bool same_state(const RngState& a, const RngState& b) {
  return a.s[0] == b.s[0] && a.s[1] == b.s[1] && a.s[2] == b.s[2] && a.s[3] == b.s[3];
}

uint64_t min_margin(const SampleTrace& t) { return std::min({t.draw_margin, t.top_p_margin, t.min_p_margin}); }

}  // namespace

TEST_CASE("gpu sample: device draws equal the CPU reference's, same RNG stream") {
  std::mt19937_64 rng(2024);
  int64_t draws = 0, near = 0, mismatches = 0, mismatches_near = 0;
  for (int64_t V : {1, 7, 1000, 32000, 129280}) {
    DevBuf ws(cuda::sample_workspace_bytes(V)), dstate(sizeof(SampleDeviceState)), dout(4);
    for (int si = 0; si <= int(Shape::all_neg_inf); ++si) {
      const Shape shape = Shape(si);
      const auto row = make_row(V, shape, rng);
      const bool exact = shape == Shape::pos_inf || shape == Shape::all_nan || shape == Shape::all_neg_inf;
      DevBuf dl(row);
      const int combos = V >= 32000 ? 10 : 30, per_combo = V >= 32000 ? 6 : 20;
      for (int c = 0; c < combos; ++c) {
        SampleDeviceState st{rng_seeded(rng()), random_params(V, rng)};
        GPU_CHECK(cudaMemcpy(dstate.p, &st, sizeof(st), cudaMemcpyHostToDevice));
        RngState host = st.rng;
        for (int d = 0; d < per_combo; ++d) {
          dout.poison();
          cuda::sample_row(dl.as<float>(), V, dstate.as<SampleDeviceState>(), ws.p, ws.bytes, dout.as<int32_t>(),
                           nullptr);
          GPU_CHECK(cudaGetLastError());
          const int32_t got = dout.get<int32_t>(1)[0];
          SampleTrace tr;
          const int32_t want = sample_token(row, st.params, host, &tr);
          const bool is_near = !exact && st.params.temperature > 0 && min_margin(tr) <= kTol;
          ++draws;
          near += is_near;
          if (got != want) {
            ++mismatches;
            mismatches_near += is_near;
            if (!is_near)
              MESSAGE("V ", V, " ", shape_name(shape), " T ", st.params.temperature, " k ", st.params.top_k, " p ",
                      st.params.top_p, " min-p ", st.params.min_p, ": device ", got, ", cpu ", want, " (keep ", tr.keep,
                      ", margins ", tr.draw_margin, " / ", tr.top_p_margin, " / ", tr.min_p_margin, ")");
          }
          REQUIRE(got >= 0);
          REQUIRE(got < V);
          const auto dev = dstate.get<SampleDeviceState>(1)[0];
          REQUIRE_MESSAGE(same_state(dev.rng, host), "RNG state after draw ", d, " (V ", V, ", ", shape_name(shape), ")");
        }
      }
    }
  }
  std::printf("gpu sample: %lld draws, %lld within %llu units of a boundary, %lld mismatches (%lld of them near)\n",
              (long long)draws, (long long)near, (unsigned long long)kTol, (long long)mismatches,
              (long long)mismatches_near);
  CHECK(mismatches == mismatches_near);
  CHECK(mismatches * 1000 <= draws);
}

TEST_CASE("gpu sample: NaN / inf rows are defined, never out of bounds") {
  // Checked against the rules in ops/sample/sample.h directly, not only via the CPU.
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  const int64_t V = 4096;
  DevBuf ws(cuda::sample_workspace_bytes(V)), dstate(sizeof(SampleDeviceState)), dout(4);
  auto run = [&](const std::vector<float>& row, SampleParams p, uint64_t seed) {
    SampleDeviceState st{rng_seeded(seed), p};
    GPU_CHECK(cudaMemcpy(dstate.p, &st, sizeof(st), cudaMemcpyHostToDevice));
    DevBuf dl(row);
    dout.poison();
    cuda::sample_row(dl.as<float>(), V, dstate.as<SampleDeviceState>(), ws.p, ws.bytes, dout.as<int32_t>(), nullptr);
    GPU_CHECK(cudaGetLastError());
    return dout.get<int32_t>(1)[0];
  };
  SampleParams p;
  p.temperature = 1.0f;
  std::vector<float> row(size_t(V), nan);
  CHECK(run(row, p, 1) == 0);  // only NaN: the first id
  row.assign(size_t(V), -inf);
  std::set<int32_t> seen;
  for (uint64_t s = 0; s < 64; ++s) seen.insert(run(row, p, s));  // only -inf: uniform
  CHECK(seen.size() > 50);
  std::mt19937_64 rng(5);
  row = randn(size_t(V), rng);
  for (size_t i = 0; i < row.size(); i += 2) row[i] = nan;
  row[100] = inf;
  row[3001] = inf;
  seen.clear();
  for (uint64_t s = 0; s < 64; ++s) seen.insert(run(row, p, s));  // +inf entries share the mass
  CHECK(seen == std::set<int32_t>{100, 3001});
  row[100] = row[3001] = 1.0f;
  for (uint64_t s = 0; s < 64; ++s) {
    const int32_t t = run(row, p, s);
    CHECK(!std::isnan(row[size_t(t)]));
  }
}

TEST_CASE("gpu sample: captured in a CUDA graph, replays follow the RNG stream; timing at V = 129280") {
  const int64_t V = 129280;
  std::mt19937_64 rng(77);
  const auto row = randn(size_t(V), rng, 3.0f);
  DevBuf dl(row), ws(cuda::sample_workspace_bytes(V)), dstate(sizeof(SampleDeviceState)), dout(4);
  for (SampleParams p : {SampleParams{0.8f, 0, 1.0f, 0.0f}, SampleParams{0.6f, 0, 0.95f, 0.0f},
                         SampleParams{1.0f, 40, 0.9f, 0.05f}}) {
    SampleDeviceState st{rng_seeded(3), p};
    GPU_CHECK(cudaMemcpy(dstate.p, &st, sizeof(st), cudaMemcpyHostToDevice));
    cudaStream_t s;
    GPU_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    // One eager run first (as the executor does: module loading stays out of capture).
    cuda::sample_row(dl.as<float>(), V, dstate.as<SampleDeviceState>(), ws.p, ws.bytes, dout.as<int32_t>(), s);
    GPU_CHECK(cudaStreamSynchronize(s));
    RngState host = st.rng;
    CHECK(dout.get<int32_t>(1)[0] == sample_token(row, p, host));
    cudaGraph_t g;
    GPU_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    cuda::sample_row(dl.as<float>(), V, dstate.as<SampleDeviceState>(), ws.p, ws.bytes, dout.as<int32_t>(), s);
    GPU_CHECK(cudaStreamEndCapture(s, &g));
    cudaGraphExec_t ge;
    GPU_CHECK(cudaGraphInstantiate(&ge, g, 0));
    for (int i = 0; i < 20; ++i) {
      dout.poison();
      GPU_CHECK(cudaGraphLaunch(ge, s));
      GPU_CHECK(cudaStreamSynchronize(s));
      CHECK(dout.get<int32_t>(1)[0] == sample_token(row, p, host));
      CHECK(same_state(dstate.get<SampleDeviceState>(1)[0].rng, host));
    }
    cudaEvent_t a, b;
    GPU_CHECK(cudaEventCreate(&a));
    GPU_CHECK(cudaEventCreate(&b));
    const int reps = 200;
    GPU_CHECK(cudaEventRecord(a, s));
    for (int i = 0; i < reps; ++i) GPU_CHECK(cudaGraphLaunch(ge, s));
    GPU_CHECK(cudaEventRecord(b, s));
    GPU_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    GPU_CHECK(cudaEventElapsedTime(&ms, a, b));
    std::printf("gpu sample: V %lld T %.2f top-k %d top-p %.2f min-p %.2f: %.1f us per token (graph replay)\n",
                (long long)V, p.temperature, p.top_k, p.top_p, p.min_p, 1000.0 * ms / reps);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
    cudaStreamDestroy(s);
  }
}

namespace {

std::string tiny_model() {
  const std::string dir = std::string(FLASHPLAN_TEST_DATA) + "/hf/seed1/";
  std::ifstream f(dir + "oracle.json");
  REQUIRE(f.good());
  return dir + nlohmann::json::parse(f)["gguf"]["file"].get<std::string>();
}

// n tokens after `prompt`, one append_sample per token.
std::vector<int32_t> decode(Engine& e, const std::vector<int32_t>& prompt, int n, Sampler& s) {
  auto sess = e.new_session();
  std::vector<int32_t> out{sess->append_sample(prompt, s)};
  while (int(out.size()) < n) out.push_back(sess->append_sample(std::span<const int32_t>(&out.back(), 1), s));
  return out;
}

}  // namespace

TEST_CASE("gpu sample: the CUDA session samples on the device as the host would, graphs on and off") {
  const std::vector<int32_t> prompt = {1, 17, 42, 99, 5, 300, 7};
  for (bool graphs : {true, false}) {
    cuda::CudaOptions o;
    o.max_context = 256;
    o.max_step = 4;  // the prompt takes two chunks
    o.graphs = graphs;
    auto dev = cuda::CudaEngine::open(tiny_model(), o);
    o.host_sampling = true;
    auto host = cuda::CudaEngine::open(tiny_model(), o);
    for (SamplerOptions so : {SamplerOptions{{0.0f, 0, 1.0f, 0.0f}, 0}, SamplerOptions{{0.8f, 0, 1.0f, 0.0f}, 3},
                              SamplerOptions{{1.0f, 20, 0.9f, 0.02f}, 11}, SamplerOptions{{1.5f, 0, 1.0f, 0.0f}, 12345}}) {
      Sampler a(so), b(so);
      const auto got = decode(*dev, prompt, 24, a);
      const auto want = decode(*host, prompt, 24, b);
      CHECK_MESSAGE(got == want, "graphs ", graphs, " T ", so.temperature, " seed ", so.seed);
      CHECK(same_state(a.rng_state(), b.rng_state()));
    }
  }
}
