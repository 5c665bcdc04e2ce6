// The generation loop every front end uses (run, chat, serve): prefill the prompt,
// then sample token by token, optionally speculating with the MTP block.
//
// MTP (greedy or sampled): the session drafts up to k tokens after the decided one; the
// trunk verifies [decided, drafts...] in one step; walking the verified rows, each row's
// token is sampled exactly as plain decoding would sample it (same logits, same random
// draw), and a draft is accepted only if it equals that token. The first mismatch
// becomes the next decided token and the session rolls back the rejected positions. So
// the output is byte-identical to decoding without MTP, for any k and any seed.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "runtime/engine.h"
#include "runtime/sampling/sampler.h"

namespace fp {

struct GenerateOptions {
  int64_t max_tokens = 64;
  int mtp_draft = 0;                  // draft length per step; 0 = off
  std::vector<int32_t> stop_tokens;   // generation ends after emitting one of these
};

struct GenerateStats {
  int64_t prompt_tokens = 0;
  int64_t generated = 0;
  double prefill_s = 0;   // prompt processing, up to the first sampled token's logits
  double decode_s = 0;    // everything after
  int64_t drafted = 0;    // MTP draft tokens proposed
  int64_t accepted = 0;   // ... and accepted
  bool stopped = false;   // ended on a stop token (or the callback)
  double prefill_tps() const { return prefill_s > 0 ? double(prompt_tokens) / prefill_s : 0; }
  double decode_tps() const { return decode_s > 0 ? double(generated) / decode_s : 0; }
  double acceptance() const { return drafted > 0 ? double(accepted) / double(drafted) : 0; }
};

// Called with each generated token; return false to stop.
using TokenCallback = std::function<bool(int32_t)>;

// Appends `prompt` to `s` (which may already hold earlier turns) and generates. The
// generated tokens are appended to `out`. The session ends holding the prompt and
// every generated token but the last (which was sampled, not yet fed).
GenerateStats generate(Session& s, std::span<const int32_t> prompt, const GenerateOptions& o, Sampler& sampler,
                       std::vector<int32_t>& out, const TokenCallback& on_token = {});

}  // namespace fp
