// CpuEngine / CpuSession (see engine.h).
#include "runtime/cpu/engine.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "ops/core/error.h"
#include "runtime/plan/plan_binding.h"

namespace fp::cpu {

// =============================================================================
// Engine
// =============================================================================

CpuEngine::CpuEngine(Model model, const CpuOptions& o) : model_(std::move(model)), opts_(o) {
  // Another model or device first: every later complaint would be about the wrong file.
  if (opts_.plan) check_plan_for_cpu(*opts_.plan, model_.file(), model_.mtp_file());
  weights_ = bind_weights(model_);
  const ModelConfig& c = model_.config();
  if (c.context_length > 0) opts_.max_context = std::min<int64_t>(opts_.max_context, int64_t(c.context_length));
  if (opts_.max_context <= 0) fail("cpu engine: max context ", opts_.max_context, ", expected > 0");
  if (opts_.max_step <= 0) fail("cpu engine: prefill chunk ", opts_.max_step, ", expected > 0");
  if (opts_.mtp_draft < 0) fail("cpu engine: MTP draft ", opts_.mtp_draft, ", expected >= 0");
  if (opts_.min_rollback < 0) fail("cpu engine: rollback ", opts_.min_rollback, ", expected >= 0");
  if (opts_.mtp_draft > 0 && !weights_.mtp)
    fail(model_.file().path(), ": --mtp-draft ", opts_.mtp_draft, " needs an MTP block: ", model_.mtp_notice());
  // A verification step holds the decided token and its drafts.
  opts_.max_step = std::max<int64_t>(opts_.max_step, opts_.mtp_draft + 1);
  if (opts_.plan) {
    bind_plan(*opts_.plan);
    return;
  }
  GraphOptions g;
  g.max_context = uint64_t(opts_.max_context);
  g.cost_context = g.max_context;
  g.mtp_depth = uint32_t(std::max(1, opts_.mtp_draft));
  graph_ = build_op_graph(model_, g);
}

void CpuEngine::bind_plan(const LoadedPlan& p) {
  check_options_against_plan(p, opts_.numerics, opts_.max_context, opts_.max_step);
  const PlanSettings s = plan_settings(p);
  if (opts_.mtp_draft != 0 && uint32_t(opts_.mtp_draft) != s.mtp_depth)
    fail(p.path, ": MTP draft ", opts_.mtp_draft, " asked for, the plan fixes depth ", s.mtp_depth, " (0 turns MTP off)");
  graph_ = plan_op_graph(p, model_);
  // Every node runs its op kind's reference: the only kernels this executor has.
  for (const plan::Phase* ph : *p->phases())
    for (const plan::Node* n : *ph->nodes()) {
      const std::string id = p.kernel_id(*n);
      const std::string want = std::string("cpu.") + op_kind_name(OpKind(uint8_t(n->op())));
      if (id != want)
        fail(p.path, ": node ", n->name()->str(), " in phase ", ph->name()->str(), " runs kernel ", id,
             ", the CPU reference executor implements only ", want);
    }
}

std::unique_ptr<CpuEngine> CpuEngine::open(const std::string& path, const CpuOptions& o, const ModelOpenOptions& mo) {
  return std::make_unique<CpuEngine>(Model::open(path, mo), o);
}

const Tokenizer& CpuEngine::tokenizer() const {
  std::call_once(tok_once_, [&] { tok_.emplace(Tokenizer::from_gguf(model_.file())); });
  return *tok_;
}

std::string CpuEngine::model_name() const {
  if (!model_.config().name.empty()) return model_.config().name;
  return std::filesystem::path(model_.file().path()).stem().string();
}

LoadInfo CpuEngine::load_info() const {
  LoadInfo l;
  if (opts_.plan) l.plan = opts_.plan->path;
  return l;
}

std::unique_ptr<Session> CpuEngine::new_session() { return std::make_unique<CpuSession>(*this, opts_); }

// =============================================================================
// Session
// =============================================================================

namespace {

StateSizing sizing(const CpuOptions& o) {
  StateSizing s;
  s.max_context = o.max_context;
  s.max_step = o.max_step;
  s.max_rollback = std::max<int64_t>(o.mtp_draft, o.min_rollback);
  return s;
}

// Bytes of one layer's state that hold positions [0, pos): the raw ring's live rows,
// the compressor rings' live entries (kv and score) and the rows emitted so far.
uint64_t layer_bytes_at(const LayerState& l, int64_t pos) {
  uint64_t b = uint64_t(std::min(pos, l.raw_cap) * l.head_dim);
  for (const CompressorCache* c : {&l.attn, &l.index}) {
    if (!c->active()) continue;
    b += uint64_t(2 * std::min(pos, c->cap) * c->shape.width());
    b += uint64_t(std::min(pos / c->shape.ratio, c->max_rows) * c->shape.dim);
  }
  return b * sizeof(float);
}

int32_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return int32_t(best);
}

}  // namespace

CpuSession::CpuSession(const CpuEngine& e, const CpuOptions& o)
    : engine_(e),
      vocab_(e.config().n_vocab),
      mtp_k_(o.mtp_draft),
      st_(make_sequence_state(e.config(), sizing(o), o.mtp_draft > 0)),
      exec_(e.config(), e.weights(), e.graph(), o.numerics, o.max_step) {
  last_logits_.assign(size_t(vocab_), 0.0f);
  if (mtp_k_ > 0) {
    hidden_.assign(size_t(o.max_step) * e.config().hc_count * e.config().n_embd, 0.0f);
    mtp_logits_.assign(size_t(vocab_), 0.0f);
  }
}

uint64_t CpuSession::kv_bytes() const {
  uint64_t b = 0;
  for (const LayerState& l : st_.layers) b += layer_bytes_at(l, pos_);
  if (st_.has_mtp) b += layer_bytes_at(st_.mtp, pos_);
  return b;
}

void CpuSession::reset() {
  pos_ = 0;
  hidden_pos0_ = hidden_n_ = 0;
  mtp_pos_ = 0;
}

void CpuSession::mtp_rows(const int32_t* next_tokens, const float* H, int64_t n, int64_t pos0, float* logits) {
  exec_.mtp_forward(st_, next_tokens, H, n, pos0, logits);
}

void CpuSession::step(const int32_t* tokens, int64_t n, int64_t logit_from, float* out) {
  const int64_t P = pos_;
  if (P + n > st_.sizing.max_context)
    fail("context full: ", P, " + ", n, " tokens exceed the session's max context ", st_.sizing.max_context);
  const int64_t hd = int64_t(engine_.config().hc_count) * engine_.config().n_embd;
  if (mtp_k_ > 0 && P > 0 && mtp_pos_ == P - 1) {
    // The pending MTP row (h_{P-1}, t_P): t_P is this step's first token.
    mtp_rows(tokens, hidden_.data() + (P - 1 - hidden_pos0_) * hd, 1, P - 1, nullptr);
    mtp_pos_ = P;
  }
  exec_.forward(st_, tokens, n, P, logit_from, out);
  pos_ = P + n;
  if (mtp_k_ > 0) {
    std::memcpy(hidden_.data(), exec_.hidden(), size_t(n * hd) * sizeof(float));
    hidden_pos0_ = P;
    hidden_n_ = n;
    // Every row whose next token is in this step: (h_i, t_{i+1}) for i < P + n - 1.
    if (n > 1) mtp_rows(tokens + 1, hidden_.data(), n - 1, P, nullptr);
    mtp_pos_ = P + n - 1;
  }
}

std::span<const float> CpuSession::append(std::span<const int32_t> tokens) {
  const int64_t n = int64_t(tokens.size());
  if (n == 0) fail("append: no tokens");
  const int64_t S = exec_.max_step();
  for (int64_t b = 0; b < n; b += S) {
    const int64_t m = std::min(S, n - b);
    const bool last = b + m == n;
    step(tokens.data() + b, m, last ? m - 1 : m, last ? last_logits_.data() : nullptr);
  }
  return {last_logits_.data(), size_t(vocab_)};
}

std::span<const float> CpuSession::append_all(std::span<const int32_t> tokens) {
  const int64_t n = int64_t(tokens.size());
  if (n == 0) fail("append: no tokens");
  all_logits_.resize(size_t(n * vocab_));
  const int64_t S = exec_.max_step();
  for (int64_t b = 0; b < n; b += S) {
    const int64_t m = std::min(S, n - b);
    step(tokens.data() + b, m, 0, all_logits_.data() + b * vocab_);
  }
  std::memcpy(last_logits_.data(), all_logits_.data() + (n - 1) * vocab_, size_t(vocab_) * sizeof(float));
  return {all_logits_.data(), all_logits_.size()};
}

void CpuSession::truncate(uint64_t n_) {
  const int64_t n = int64_t(n_);
  if (n > pos_) fail("truncate: to ", n, " tokens, but the sequence has ", pos_);
  if (pos_ - n > st_.sizing.max_rollback)
    fail("truncate: ", pos_ - n, " positions back, this session keeps at most ", st_.sizing.max_rollback);
  if (n == pos_) return;
  if (mtp_k_ > 0 && n > 0 && n - 1 < hidden_pos0_)
    fail("truncate: to ", n, " tokens, before the last step (", hidden_pos0_, ")");
  pos_ = n;
  if (mtp_k_ > 0) mtp_pos_ = std::min(mtp_pos_, std::max<int64_t>(0, n - 1));
}

std::vector<int32_t> CpuSession::mtp_draft(int32_t next, int k) {
  std::vector<int32_t> drafts;
  if (mtp_k_ == 0 || k <= 0 || pos_ == 0) return drafts;
  k = std::min(k, mtp_k_);
  const int64_t P = pos_;
  if (mtp_pos_ != P - 1) fail("mtp_draft: MTP row ", P - 1, " is not pending (next pending ", mtp_pos_, ")");
  const int64_t hd = int64_t(engine_.config().hc_count) * engine_.config().n_embd;
  if (P + k - 1 > st_.sizing.max_context) k = int(std::max<int64_t>(0, st_.sizing.max_context - P + 1));
  if (k == 0) return drafts;
  // The pending row is exact (the trunk's h_{P-1} and the decided token); deeper rows
  // chain on the block's own output and are overwritten once the trunk verifies.
  mtp_rows(&next, hidden_.data() + (P - 1 - hidden_pos0_) * hd, 1, P - 1, mtp_logits_.data());
  mtp_pos_ = P;
  drafts.push_back(argmax(mtp_logits_.data(), vocab_));
  std::vector<float> H(static_cast<size_t>(hd));
  for (int j = 1; j < k; ++j) {
    std::memcpy(H.data(), exec_.hidden(), size_t(hd) * sizeof(float));
    mtp_rows(&drafts.back(), H.data(), 1, P - 1 + j, mtp_logits_.data());
    drafts.push_back(argmax(mtp_logits_.data(), vocab_));
  }
  return drafts;
}

}  // namespace fp::cpu
