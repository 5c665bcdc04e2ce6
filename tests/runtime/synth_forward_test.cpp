// Synth models are "valid" (issue 3): run through the CPU reference executor, the
// residual streams stay O(1) through every layer, logits are finite and O(1), and the
// router picks different experts for different tokens. Checked on the tiny preset, on
// a 43-layer model of tiny width (depth as Flash), and on a small-width model with the
// full preset's dtype mix (IQ2_XXS / Q2_K experts, Q8_0 attention, F16 elsewhere).
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "planner/model/synth.h"
#include "runtime/cpu/engine.h"

using fp::cpu::CpuEngine;
using fp::cpu::CpuOptions;
namespace fs = std::filesystem;

namespace {

struct Scratch {
  fs::path dir = fs::temp_directory_path() / ("fp_synth_forward_" + std::to_string(getpid()));
  Scratch() { fs::create_directories(dir); }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

std::string write(const std::string& name, const fp::SynthConfig& s) {
  static Scratch scratch;
  fp::SynthWriteOptions o;
  o.path = (scratch.dir / (name + ".gguf")).string();
  fp::write_synth(s, o);
  return o.path;
}

fp::SynthConfig deep_tiny() {
  fp::SynthConfig s = fp::synth_preset("tiny");
  fp::set_layer_pattern(s.model, 43, 2, 16);
  return s;
}

// Small widths, the real file's dtype mix.
fp::SynthConfig full_mix() {
  fp::SynthConfig s = fp::synth_preset("full");
  fp::ModelConfig& m = s.model;
  m.n_embd = 256;
  m.n_vocab = 512;
  m.n_head = 4;
  m.head_dim = 64;
  m.rope_dim = 16;
  m.q_lora_rank = 64;
  m.o_lora_rank = 32;
  m.o_groups = 2;
  m.sliding_window = 16;
  m.indexer_heads = 8;
  m.indexer_head_dim = 32;
  m.indexer_top_k = 8;
  m.n_expert = 16;
  m.n_expert_used = 4;
  m.expert_ff = 256;
  m.context_length = 4096;
  fp::set_layer_pattern(m, 8, 2, 16);
  return s;
}

struct Observed {
  std::vector<double> max_stream_rms;  // per entry of after_layer: max over tokens
  std::vector<double> min_stream_rms;
  double logit_sd = 0;
  bool finite = true;
  std::vector<std::vector<int32_t>> experts;  // [layer][token*k + i]
};

Observed run(const std::string& path, int n_tokens) {
  CpuOptions o;
  o.max_context = 512;
  o.max_step = 256;
  auto e = CpuEngine::open(path, o);
  const fp::ModelConfig& c = e->config();
  auto s = e->new_session();
  auto& ex = dynamic_cast<fp::cpu::CpuSession&>(*s).executor();
  ex.stream_trace.enabled = true;
  ex.router_trace.enabled = true;
  std::vector<int32_t> ids = {int32_t(c.bos_id)};
  uint32_t x = 777;
  while (int(ids.size()) < n_tokens) {
    x = x * 1664525u + 1013904223u;
    ids.push_back(int32_t((x >> 8) % c.n_vocab));
  }
  const auto logits = s->append(ids);

  Observed r;
  const size_t hd = size_t(c.hc_count) * c.n_embd;
  for (const auto& X : ex.stream_trace.after_layer) {
    double mx = 0, mn = 1e30;
    for (int t = 0; t < n_tokens; ++t) {
      double s2 = 0;
      for (size_t j = 0; j < hd; ++j) {
        const double v = X[t * hd + j];
        r.finite = r.finite && std::isfinite(v);
        s2 += v * v;
      }
      const double rms = std::sqrt(s2 / double(hd));
      mx = std::max(mx, rms);
      mn = std::min(mn, rms);
    }
    r.max_stream_rms.push_back(mx);
    r.min_stream_rms.push_back(mn);
  }
  double s1 = 0, s2 = 0;
  for (float v : logits) {
    r.finite = r.finite && std::isfinite(v);
    s1 += v;
    s2 += double(v) * v;
  }
  const double n = double(logits.size());
  r.logit_sd = std::sqrt(s2 / n - (s1 / n) * (s1 / n));
  r.experts = ex.router_trace.experts;
  return r;
}

void check_valid(const fp::SynthConfig& s, const std::string& name) {
  const int n_tokens = 64;
  const Observed r = run(write(name, s), n_tokens);
  const fp::ModelConfig& c = s.model;
  CHECK(r.finite);
  // O(1): every token's residual stream RMS within [0.1, 10] after every layer.
  REQUIRE(r.max_stream_rms.size() == c.n_layer + 1);
  for (size_t l = 0; l < r.max_stream_rms.size(); ++l) {
    CAPTURE(l);
    CHECK(r.max_stream_rms[l] < 10);
    CHECK(r.min_stream_rms[l] > 0.1);
  }
  MESSAGE(name, ": stream RMS after embedding ", r.max_stream_rms.front(), ", after the last layer ", r.min_stream_rms.back(),
          "..", r.max_stream_rms.back(), "; logit sd ", r.logit_sd);
  CHECK(r.logit_sd > 0.1);
  CHECK(r.logit_sd < 10);

  // Routing varies by token: many distinct expert sets, no expert taken by (nearly)
  // every token, most experts used, in every top-k routed layer.
  REQUIRE(r.experts.size() == c.n_layer);
  const size_t k = c.n_expert_used;
  for (uint32_t l = c.hash_layer_count; l < c.n_layer; ++l) {
    CAPTURE(l);
    REQUIRE(r.experts[l].size() == n_tokens * k);
    std::set<std::set<int32_t>> sets;
    std::map<int32_t, int> uses;
    for (int t = 0; t < n_tokens; ++t) {
      std::set<int32_t> chosen(r.experts[l].begin() + t * k, r.experts[l].begin() + (t + 1) * k);
      CHECK(chosen.size() == k);
      for (int32_t e : chosen) ++uses[e];
      sets.insert(chosen);
    }
    int busiest = 0;
    for (const auto& [e, u] : uses) busiest = std::max(busiest, u);
    INFO(name, " layer ", l, ": ", sets.size(), " distinct sets, ", uses.size(), " experts used, busiest in ", busiest, " tokens");
    CHECK(sets.size() >= n_tokens / 8);
    CHECK(uses.size() >= c.n_expert / 2);
    CHECK(busiest < n_tokens);
  }
}

}  // namespace

TEST_CASE("synth models are valid through the CPU forward pass: tiny preset") { check_valid(fp::synth_preset("tiny"), "tiny"); }

TEST_CASE("synth models are valid through the CPU forward pass: 43 layers of tiny width") {
  check_valid(deep_tiny(), "deep");
}

TEST_CASE("synth models are valid through the CPU forward pass: the full dtype mix at small width") {
  check_valid(full_mix(), "full_mix");
}
