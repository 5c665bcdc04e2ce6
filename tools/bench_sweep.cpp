// The context-frontier sweep (see bench_sweep.h).
#include "tools/bench_sweep.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "ops/core/error.h"
#include "runtime/generate/generate.h"
#include "runtime/sampling/sampler.h"

namespace fp::bench {
namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double rate(int64_t tokens, double seconds) { return tokens > 0 && seconds > 0 ? double(tokens) / seconds : 0.0; }

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// When each generated token appeared, and the session position at that moment. Every
// decode step of the generate loop appends once and then emits its tokens, so the
// position is constant within a step and grows from one step to the next: a change of
// position marks a step boundary (an MTP step emits several tokens at once).
struct Emit {
  double t;
  uint64_t pos;
};

}  // namespace

std::vector<int64_t> frontiers(const SweepOptions& o) {
  if (o.ctx_start <= 0) fail("--ctx-start ", o.ctx_start, ", expected > 0");
  if (o.ctx_max < o.ctx_start) fail("--ctx-max ", o.ctx_max, ", expected >= --ctx-start (", o.ctx_start, ")");
  if (o.ctx_max > (int64_t(1) << 40)) fail("--ctx-max ", o.ctx_max, ", expected a context below 2^40 tokens");
  if (!(o.step_mul >= 1.0) || !std::isfinite(o.step_mul)) fail("--step-mul ", o.step_mul, ", expected >= 1");
  if (o.step_mul == 1.0 && o.step_incr <= 0) fail("--step-incr ", o.step_incr, ", expected > 0");
  if (o.gen_tokens < 0) fail("--gen-tokens ", o.gen_tokens, ", expected >= 0");
  if (o.mtp_draft < 0) fail("--mtp-draft ", o.mtp_draft, ", expected >= 0");
  std::vector<int64_t> f;
  for (int64_t c = o.ctx_start;;) {
    f.push_back(c);
    if (c >= o.ctx_max) break;
    int64_t next = o.step_mul == 1.0 ? c + o.step_incr : int64_t(std::ceil(double(c) * o.step_mul));
    if (next <= c) next = c + 1;
    c = std::min(next, o.ctx_max);
  }
  return f;
}

int64_t needed_context(const SweepOptions& o) { return o.ctx_max + o.gen_tokens; }

std::vector<int32_t> synthetic_tokens(int64_t n, int64_t vocab, int32_t bos, int32_t eos, uint64_t seed) {
  if (vocab < 3) fail("synthetic prompt: vocabulary of ", vocab, " tokens, expected at least 3");
  std::vector<int32_t> t;
  t.reserve(size_t(n));
  if (bos >= 0 && n > 0) t.push_back(bos);
  uint64_t state = seed;
  while (int64_t(t.size()) < n) {
    const auto id = int32_t(splitmix64(state) % uint64_t(vocab));
    if (id != bos && id != eos) t.push_back(id);
  }
  return t;
}

namespace {

// Rolling back needs room for every decoded token; MTP sessions only roll back within
// their last verify step, so they re-prefill.
bool can_truncate(const Session& s, const SweepOptions& o) {
  return int64_t(s.max_rollback()) >= o.gen_tokens && o.mtp_draft == 0;
}

}  // namespace

void check_session(const Session& s, size_t n_tokens, const SweepOptions& o) {
  frontiers(o);
  if (int64_t(n_tokens) < o.ctx_max)
    fail("bench: the prompt has ", n_tokens, " tokens, expected at least --ctx-max (", o.ctx_max, ")");
  if (int64_t(s.max_context()) < needed_context(o))
    fail("bench: the session holds ", s.max_context(), " tokens, expected at least --ctx-max + --gen-tokens (",
         needed_context(o), "); raise -c/--ctx or lower --ctx-max");
  if (o.mtp_draft > 0 && s.mtp_max_draft() == 0) fail("bench: --mtp-draft ", o.mtp_draft, " but the session has no MTP");
  if (o.restore == Restore::truncate && !can_truncate(s, o))
    fail("bench: --restore truncate needs a session that rolls back --gen-tokens (", o.gen_tokens,
         ") positions without MTP; this one keeps ", s.max_rollback(), o.mtp_draft > 0 ? " and drafts with MTP" : "");
}

void sweep(Session& s, std::span<const int32_t> tokens, const SweepOptions& o,
           const std::function<void(const Row&)>& on_row) {
  check_session(s, tokens.size(), o);
  const std::vector<int64_t> fs = frontiers(o);
  const bool use_truncate = o.restore == Restore::truncate || (o.restore == Restore::automatic && can_truncate(s, o));

  s.reset();
  Sampler greedy(SamplerOptions{});
  int64_t previous = 0;
  for (size_t i = 0; i < fs.size(); ++i) {
    const int64_t f = fs[i];
    Row r;
    r.ctx_tokens = f;
    r.prefill_tokens = f - previous;
    r.gen_tokens = o.gen_tokens;

    GenerateOptions g;
    g.max_tokens = o.gen_tokens + 1;  // the first token comes from the prefill logits
    g.mtp_draft = o.mtp_draft;
    std::vector<Emit> emits;
    emits.reserve(size_t(g.max_tokens));
    auto on_token = [&](int32_t) {
      emits.push_back({now(), s.position()});
      if (emits.size() == 1) r.kvcache_bytes = s.kv_bytes();  // still exactly at the frontier
      return true;
    };
    const GenerateStats st = generate(s, tokens.subspan(size_t(previous), size_t(f - previous)), g, greedy,
                                      r.generated, on_token);
    if (int64_t(emits.size()) != g.max_tokens)
      fail("bench: generation at frontier ", f, " stopped after ", emits.size(), " tokens, expected ", g.max_tokens);

    r.prefill_s = st.prefill_s;
    r.prefill_tps = rate(r.prefill_tokens, r.prefill_s);
    r.drafted = st.drafted;
    r.accepted = st.accepted;
    if (o.gen_tokens > 0) {
      const double t0 = emits.front().t;
      size_t first_end = 1;  // one past the last token of the first decode step
      while (first_end + 1 < emits.size() && emits[first_end + 1].pos == emits[1].pos) ++first_end;
      ++first_end;
      const double t_first = emits[first_end - 1].t;
      r.gen_s = emits.back().t - t0;
      r.gen_tps = rate(o.gen_tokens, r.gen_s);
      r.first_token_sec = t_first - t0;
      r.gen_tps_ss = rate(int64_t(emits.size() - first_end), emits.back().t - t_first);
    }

    if (i + 1 < fs.size()) {
      if (use_truncate) {
        s.truncate(uint64_t(f));
        r.restored = "truncate";
      } else {
        s.reset();
        s.append(tokens.first(size_t(f)));
        r.restored = "replay";
      }
      if (int64_t(s.position()) != f)
        fail("bench: restoring frontier ", f, " left the session at ", s.position(), " tokens");
    }
    on_row(r);
    previous = f;
  }
}

}  // namespace fp::bench
