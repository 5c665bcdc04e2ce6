// MTP speculative decoding on the CPU executor, on the synth tiny model (random
// weights, both MTP layouts: llama.cpp in-file blk.N.* and antirez's separate mtp.0.*
// file). Exactness is the point: for any draft length and any sampling seed the tokens
// equal those of plain decoding. Also checked: the MTP state after rollbacks equals
// that of a session that never speculated (same drafts, bit for bit), and the session's
// rollback limits. Random weights accept few drafts; the rate is printed, not tested.
#include <doctest/doctest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "planner/model/synth.h"
#include "runtime/cpu/engine.h"
#include "runtime/generate/generate.h"

using fp::cpu::CpuEngine;
using fp::cpu::CpuOptions;

namespace {

struct SynthFiles {
  std::string main, mtp;
};

// The tiny synth model with the MTP block in the given layout, written once per test run.
const SynthFiles& synth(fp::MtpLayout layout) {
  static SynthFiles files[3];
  SynthFiles& f = files[int(layout)];
  if (f.main.empty()) {
    fp::SynthConfig s = fp::synth_preset("tiny");
    s.model.mtp = layout;
    s.seed = 3;
    const auto dir = std::filesystem::temp_directory_path() /
                     ("flashplan-cpu-mtp-test-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    fp::SynthWriteOptions o;
    o.path = (dir / (std::string("tiny-") + fp::mtp_layout_name(layout) + ".gguf")).string();
    const fp::SynthResult r = fp::write_synth(s, o);
    f.main = r.path;
    f.mtp = r.mtp_path;
  }
  return f;
}

std::unique_ptr<CpuEngine> engine(fp::MtpLayout layout, int mtp_draft, int64_t max_step = 64) {
  CpuOptions o;
  o.max_context = 512;
  o.max_step = max_step;
  o.mtp_draft = mtp_draft;
  fp::ModelOpenOptions mo;
  mo.mtp_path = synth(layout).mtp;
  return CpuEngine::open(synth(layout).main, o, mo);
}

std::vector<int32_t> prompt_ids() {
  // Any ids of the tiny vocabulary: BOS, then a fixed pseudo-random walk.
  std::vector<int32_t> p = {0};
  uint32_t x = 12345;
  for (int i = 0; i < 37; ++i) {
    x = x * 1103515245u + 12345u;
    p.push_back(int32_t(2 + (x >> 8) % 250));
  }
  return p;
}

struct Run {
  std::vector<int32_t> tokens;
  fp::GenerateStats stats;
};

Run generate(CpuEngine& e, int k, const fp::SamplerOptions& so, int64_t n = 48) {
  auto s = e.new_session();
  fp::Sampler sampler(so);
  fp::GenerateOptions g;
  g.max_tokens = n;
  g.mtp_draft = k;
  Run r;
  r.stats = fp::generate(*s, prompt_ids(), g, sampler, r.tokens);
  return r;
}

}  // namespace

TEST_CASE("cpu mtp: greedy output is identical with MTP off and on, for any draft length") {
  for (fp::MtpLayout layout : {fp::MtpLayout::InFile, fp::MtpLayout::Separate}) {
    const std::string layout_name = fp::mtp_layout_name(layout);
    CAPTURE(layout_name);
    auto plain = engine(layout, 0);
    const Run base = generate(*plain, 0, {});
    REQUIRE(base.tokens.size() == 48);
    auto spec = engine(layout, 6);
    for (int k : {1, 2, 3, 6}) {
      CAPTURE(k);
      const Run r = generate(*spec, k, {});
      CHECK(r.tokens == base.tokens);
      CHECK(r.stats.drafted > 0);
      MESSAGE(layout_name, " k=", k, ": accepted ", r.stats.accepted, "/", r.stats.drafted);
    }
  }
}

TEST_CASE("cpu mtp: sampled output is identical with MTP off and on (same seed)") {
  fp::SamplerOptions so;
  so.temperature = 0.9f;
  so.top_p = 0.95f;
  so.seed = 42;
  auto plain = engine(fp::MtpLayout::InFile, 0);
  auto spec = engine(fp::MtpLayout::InFile, 4);
  const Run base = generate(*plain, 0, so);
  for (int k : {1, 4}) {
    CAPTURE(k);
    CHECK(generate(*spec, k, so).tokens == base.tokens);
  }
}

TEST_CASE("cpu mtp: drafts after rollbacks equal drafts of a session that never speculated") {
  auto spec_engine = engine(fp::MtpLayout::InFile, 3);
  auto s = spec_engine->new_session();
  const std::vector<int32_t> prompt = prompt_ids();
  std::vector<int32_t> history = prompt;
  auto logits = s->append(prompt);
  int32_t next = fp::argmax_token(logits);
  int rounds = 0, rollbacks = 0;
  while (history.size() < prompt.size() + 40) {
    const std::vector<int32_t> drafts = s->mtp_draft(next, 3);
    REQUIRE(drafts.size() == 3);
    // A fresh session fed the same history in one prefill drafts the same tokens.
    {
      auto f = spec_engine->new_session();
      f->append(history);
      CHECK(f->mtp_draft(next, 3) == drafts);
    }
    std::vector<int32_t> step = {next};
    step.insert(step.end(), drafts.begin(), drafts.end());
    const uint64_t base = s->position();
    const auto rows = s->append_all(step);
    const size_t V = rows.size() / step.size();
    size_t used = 1;
    history.push_back(next);
    int32_t t = fp::argmax_token(rows.subspan(0, V));
    while (used < step.size() && t == step[used]) {
      history.push_back(t);
      t = fp::argmax_token(rows.subspan(used * V, V));
      ++used;
    }
    if (used < step.size()) ++rollbacks;
    s->truncate(base + used);
    CHECK(s->position() == history.size());
    next = t;
    ++rounds;
  }
  CHECK(rounds > 5);
  CHECK(rollbacks > 0);
}

TEST_CASE("cpu mtp: rollback limits and sessions without MTP") {
  auto e = engine(fp::MtpLayout::InFile, 2);
  auto s = e->new_session();
  s->append(prompt_ids());
  const uint64_t n = s->position();
  CHECK(s->max_rollback() == 2);
  CHECK_THROWS_AS(s->truncate(n + 1), fp::Error);
  CHECK_THROWS_AS(s->truncate(n - 3), fp::Error);
  s->truncate(n - 2);
  CHECK(s->position() == n - 2);
  auto plain = engine(fp::MtpLayout::InFile, 0);
  auto p = plain->new_session();
  p->append(prompt_ids());
  CHECK(p->mtp_draft(5, 3).empty());
  CpuOptions o;
  o.mtp_draft = 2;
  CHECK_THROWS_AS(CpuEngine::open(std::string(FLASHPLAN_TEST_DATA) + "/hf/seed1/tiny.gguf", o), fp::Error);
}
