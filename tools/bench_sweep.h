// The measurement behind `flashplan bench`: ds4-bench's context-frontier sweep, run on
// any backend through fp::Session and the shared generate loop.
//
// One fixed token sequence is walked to frontiers ctx_start, ctx_start + step, ...,
// ctx_max (or ×step_mul each time; the last frontier is always ctx_max). At each
// frontier:
//   prefill   only the tokens since the previous frontier are appended (incremental, as
//             ds4-bench does), so prefill_tps is the rate of the newest interval at
//             that depth, not of a fresh prompt;
//   generate  greedily from the frontier's logits, gen_tokens decode steps, EOS ignored
//             (every row decodes the same number of tokens);
//   restore   the session goes back to exactly the frontier (rollback when the session
//             can go that far back, else reset + re-prefill), outside both timings, so
//             the next interval extends the prompt, not the generated text.
//
// Timing (steady clock, on the host; a backend's append returns when its logits are
// ready, so device work is inside):
//   prefill_s        the interval's append + choosing the first token from its logits
//   gen_tokens       decode steps after that first token; each feeds one token (or, with
//                    MTP, a verified draft) and yields the next
//   first_token_sec  the first decode step: the first generated token fed through the
//                    model until the next token is known (ds4-bench's first_token_sec;
//                    it carries one-time costs such as graph capture on the first row)
//   gen_tps          gen_tokens / time of all decode steps
//   gen_tps_ss       steady state: (gen_tokens - tokens of the first step) / time after
//                    the first step, so short and long generations compare
//   kvcache_bytes    Session::kv_bytes() at the frontier (0 if the backend can't say)
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "runtime/engine.h"

namespace fp::bench {

enum class Restore { automatic, truncate, replay };

struct SweepOptions {
  int64_t ctx_start = 2048;
  int64_t ctx_max = 32768;
  int64_t step_incr = 2048;
  double step_mul = 1.0;  // > 1: multiplicative steps instead of step_incr
  int64_t gen_tokens = 128;
  int mtp_draft = 0;
  Restore restore = Restore::automatic;
};

struct Row {
  int64_t ctx_tokens = 0;
  int64_t prefill_tokens = 0;
  double prefill_tps = 0;
  int64_t gen_tokens = 0;
  double gen_tps = 0;
  double gen_tps_ss = 0;
  double first_token_sec = 0;
  uint64_t kvcache_bytes = 0;
  // Not in the CSV (JSON only):
  double prefill_s = 0, gen_s = 0;
  int64_t drafted = 0, accepted = 0;   // MTP
  std::string restored;                // "truncate", "replay", "" (last frontier)
  std::vector<int32_t> generated;      // first token (from the prefill logits) + decoded
};

// Checks the options (fp::Error naming the flag otherwise) and lists the frontiers.
std::vector<int64_t> frontiers(const SweepOptions& o);

// Context a session needs for the sweep: the last frontier plus the decoded tokens.
int64_t needed_context(const SweepOptions& o);

// `n` deterministic pseudo-random token ids for the sweep: BOS (if the vocabulary has
// one) then ids drawn from [0, vocab) avoiding BOS and EOS, from `seed`.
std::vector<int32_t> synthetic_tokens(int64_t n, int64_t vocab, int32_t bos, int32_t eos, uint64_t seed);

// Checks that `s` can run the sweep over `n_tokens` prompt tokens (context, MTP, the
// restore mode): an fp::Error naming the flag to change otherwise. sweep() calls it too.
void check_session(const Session& s, size_t n_tokens, const SweepOptions& o);

// Runs the sweep on an empty session; `on_row` sees each row as soon as it is measured.
void sweep(Session& s, std::span<const int32_t> tokens, const SweepOptions& o,
           const std::function<void(const Row&)>& on_row);

}  // namespace fp::bench
