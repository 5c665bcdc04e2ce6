// One side of `flashplan proof` (see proof_run.h).
#include "tools/proof_run.h"

#include <deque>
#include <thread>

#include "ops/core/error.h"
#include "ops/core/parallel.h"
#include "runtime/generate/generate.h"
#include "runtime/tokenizer/tokenizer.h"

namespace fp::proof {
namespace {

Top2 top2(std::span<const float> row) {
  Top2 t;
  for (size_t i = 0; i < row.size(); ++i) {
    const float v = row[i];
    if (t.id[0] < 0 || v > t.logit[0]) {
      t.id[1] = t.id[0], t.logit[1] = t.logit[0];
      t.id[0] = int32_t(i), t.logit[0] = v;
    } else if (t.id[1] < 0 || v > t.logit[1]) {
      t.id[1] = int32_t(i), t.logit[1] = v;
    }
  }
  return t;
}

// Forwards to a backend's session and remembers the top-2 of every logits row it hands
// out, so each emitted token can be paired with the row it was sampled from. The
// generate loop samples a step's tokens from that step's rows in order, and rows it
// did not use (rejected MTP drafts) are dropped at the next append.
class RecordingSession : public Session {
 public:
  explicit RecordingSession(Session& inner) : in_(inner) {}

  std::span<const float> append(std::span<const int32_t> tokens) override {
    auto r = in_.append(tokens);
    pending_.assign(1, top2(r));
    return r;
  }
  std::span<const float> append_all(std::span<const int32_t> tokens) override {
    auto r = in_.append_all(tokens);
    pending_.clear();
    const size_t nv = r.size() / tokens.size();
    for (size_t j = 0; j < tokens.size(); ++j) pending_.push_back(top2(r.subspan(j * nv, nv)));
    return r;
  }
  void reset() override { in_.reset(), pending_.clear(); }
  uint64_t position() const override { return in_.position(); }
  uint64_t max_context() const override { return in_.max_context(); }
  uint64_t kv_bytes() const override { return in_.kv_bytes(); }
  void truncate(uint64_t n) override { in_.truncate(n); }
  uint64_t max_rollback() const override { return in_.max_rollback(); }
  int mtp_max_draft() const override { return in_.mtp_max_draft(); }
  std::vector<int32_t> mtp_draft(int32_t next, int k) override { return in_.mtp_draft(next, k); }

  // The row the token just emitted was sampled from.
  Top2 consume() {
    if (pending_.empty()) fail("proof: a token was emitted with no logits row left to pair it with");
    Top2 t = pending_.front();
    pending_.pop_front();
    return t;
  }

 private:
  Session& in_;
  std::deque<Top2> pending_;
};

}  // namespace

Side parse_side(const std::string& name, const std::string& flags, const std::string& default_model) {
  Side s;
  s.name = name;
  s.flags = flags;
  CLI::App app{"proof side " + name, name};
  s.engine.add(app, true);
  s.engine.add_mtp(app);
  s.sampling.add(app, 0);
  try {
    app.parse(flags, false);
  } catch (const CLI::ParseError& e) {
    fail(name, " \"", flags, "\": ", e.what());
  }
  if (app.count("-n") > 0) fail(name, " \"", flags, "\": -n belongs outside ", name, " (both sides generate the same count)");
  if (s.engine.model.empty()) s.engine.model = default_model;
  return s;
}

SideResult run_side(const Side& side, const std::vector<Prompt>& prompts, const RunOptions& o) {
  // A side that leaves --threads out runs on every core, whatever the side before it set.
  if (side.engine.threads == 0) set_thread_count(int(std::max(1u, std::thread::hardware_concurrency())));
  cli::EngineArgs args = side.engine;  // open() takes a plan's settings into the flags
  auto engine = args.open();
  const Tokenizer& tok = engine->tokenizer();
  SideResult res;
  res.name = side.name;
  res.flags = side.flags;
  res.backend = engine->backend_name();
  res.model = engine->model_name();
  res.device = engine->device_name();
  for (const Prompt& p : prompts) {
    PromptResult pr;
    if (p.is_ids()) {
      pr.prompt = p.ids;
      for (int32_t id : pr.prompt)
        if (id < 0 || uint64_t(id) >= engine->config().n_vocab)
          fail("--ids: token ", id, " is outside the vocabulary of ", engine->config().n_vocab, " (", side.name, ")");
    } else {
      pr.prompt = tok.encode(p.text, true);
      if (!o.no_bos && tok.bos() >= 0 && (pr.prompt.empty() || pr.prompt[0] != tok.bos()))
        pr.prompt.insert(pr.prompt.begin(), tok.bos());
    }
    if (pr.prompt.empty()) fail("proof: prompt \"", p.text, "\" tokenizes to nothing");

    GenerateOptions g;
    g.max_tokens = o.max_tokens;
    g.mtp_draft = args.mtp_draft;
    if (!o.ignore_eos && tok.eos() >= 0) g.stop_tokens.push_back(tok.eos());
    Sampler sampler(side.sampling.s);
    auto inner = engine->new_session();
    RecordingSession rec(*inner);
    auto on_token = [&](int32_t id) {
      pr.top.push_back(rec.consume());
      pr.text.push_back(tok.piece(id));
      return true;
    };
    generate(rec, pr.prompt, g, sampler, pr.tokens, on_token);
    res.prompts.push_back(std::move(pr));
  }
  return res;
}

}  // namespace fp::proof
