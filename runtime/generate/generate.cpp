// The generation loop (see generate.h).
#include "runtime/generate/generate.h"

#include <algorithm>
#include <chrono>

#include "ops/core/error.h"

namespace fp {
namespace {

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

GenerateStats generate(Session& s, std::span<const int32_t> prompt, const GenerateOptions& o, Sampler& sampler,
                       std::vector<int32_t>& out, const TokenCallback& on_token) {
  GenerateStats st;
  st.prompt_tokens = int64_t(prompt.size());
  if (prompt.empty()) fail("generate: empty prompt");
  if (o.mtp_draft > 0 && s.mtp_max_draft() == 0) fail("generate: MTP drafting asked, but the session has no MTP");
  const int k_max = std::min(o.mtp_draft, s.mtp_max_draft());

  const double t0 = now();
  // Plain steps sample through the session (on the device where it can: no logits
  // copied); MTP verify steps sample the verified rows on the host from the same
  // sampler, whose random stream the session keeps in step.
  int32_t tok = s.append_sample(prompt, sampler);
  const double t1 = now();
  st.prefill_s = t1 - t0;

  // Emits one token; false when generation must end.
  auto emit = [&](int32_t t) {
    out.push_back(t);
    ++st.generated;
    const bool stop = std::find(o.stop_tokens.begin(), o.stop_tokens.end(), t) != o.stop_tokens.end();
    const bool go_on = on_token ? on_token(t) : true;
    if (stop || !go_on) st.stopped = true;
    return !st.stopped && st.generated < o.max_tokens;
  };

  if (o.max_tokens <= 0) return st;
  bool more = emit(tok);
  while (more) {
    if (uint64_t(s.position()) + 1 > s.max_context()) fail("context full at ", s.position(), " tokens");
    const int64_t remaining = o.max_tokens - st.generated;
    const int k = int(std::min<int64_t>({int64_t(k_max), remaining - 1,
                                         int64_t(s.max_context()) - int64_t(s.position()) - 1}));
    if (k <= 0) {
      tok = s.append_sample(std::span<const int32_t>(&tok, 1), sampler);
      more = emit(tok);
      continue;
    }
    std::vector<int32_t> step = s.mtp_draft(tok, k);
    st.drafted += int64_t(step.size());
    step.insert(step.begin(), tok);
    const uint64_t base = s.position();
    const std::span<const float> rows = s.append_all(step);
    const size_t nv = rows.size() / step.size();
    size_t used = 1;  // rows consumed: the decided token's row always is
    for (size_t j = 0; j < step.size(); ++j) {
      tok = sampler.sample(rows.subspan(j * nv, nv));
      more = emit(tok);
      if (!more) break;
      if (j + 1 < step.size() && tok == step[j + 1]) {
        ++st.accepted;
        ++used;
        continue;
      }
      break;
    }
    // Keep the decided token and the accepted drafts; when generation ends inside the
    // step, also drop whatever follows the last emitted token.
    s.truncate(base + used);
  }
  st.decode_s = now() - t1;
  return st;
}

}  // namespace fp
