// The CPU reference executor (see executor.h): binding the op graph's nodes, the node
// dispatch, and the calls each op kind makes into ops/<family>/.
#include "runtime/cpu/executor.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops/attention/attention.h"
#include "ops/compressor/compressor.h"
#include "ops/core/error.h"
#include "ops/core/parallel.h"
#include "ops/indexer/indexer.h"
#include "ops/linear/linear.h"
#include "ops/moe/moe.h"
#include "ops/norm/norm.h"
#include "ops/numerics/numerics.h"

namespace fp::cpu {
namespace {

// Multiply-adds (or comparable element operations) a thread's share of a parallel op
// should reach before waking another thread pays off.
constexpr int64_t kThreadWork = 1 << 15;

bool is_state(BufferKind k) {
  return k == BufferKind::kv_raw || k == BufferKind::kv_compressed || k == BufferKind::index_keys ||
         k == BufferKind::compressor_state;
}

}  // namespace

ref::RopeParams rope_params(const ModelConfig& c, bool compressed) {
  ref::RopeParams p;
  p.n_rot = c.rope_dim;
  if (!compressed) {
    p.base = c.rope_freq_base;
    return p;
  }
  p.base = c.compress_rope_freq_base;
  p.yarn = c.rope_scaling_factor != 1.0f && c.rope_orig_ctx > 0;
  p.factor = c.rope_scaling_factor;
  p.orig_ctx = c.rope_orig_ctx;
  p.beta_fast = c.yarn_beta_fast;
  p.beta_slow = c.yarn_beta_slow;
  return p;
}

// =============================================================================
// Construction: workspace and node binding
// =============================================================================

Executor::Executor(const ModelConfig& c, const ModelW& w, const OpGraph& g, Numerics numerics, int64_t max_step)
    : c_(c), w_(w), numerics_(numerics), max_step_(max_step) {
  if (max_step <= 0) fail("executor: max_step ", max_step, ", expected > 0");
  if (c.n_head_kv != 1) fail("executor: head_count_kv ", c.n_head_kv, ", expected 1 (shared K=V head)");
  hcs_.hc = c.hc_count;
  hcs_.dim = c.n_embd;
  hcs_.norm_eps = c.rms_eps;
  hcs_.hc_eps = c.hc_eps;
  hcs_.sinkhorn_iters = c.hc_sinkhorn_iters;
  rope_main_ = ref::Rope(rope_params(c, false));
  rope_comp_ = ref::Rope(rope_params(c, true));
  E_ = c.n_embd;
  D_ = c.head_dim;
  H_ = c.n_head;
  ID_ = c.indexer_head_dim;
  IH_ = c.indexer_heads;
  K_ = c.n_expert_used;
  if (c.rope_dim > c.head_dim || (ID_ > 0 && c.rope_dim > ID_))
    fail("executor: rope dims ", c.rope_dim, " exceed a head (", c.head_dim, " / indexer ", ID_, ")");

  int64_t ff_sh = 0;
  for (const auto& L : w.layers) ff_sh = std::max(ff_sh, L.gate_sh.rows);
  if (w.mtp) ff_sh = std::max(ff_sh, w.mtp->layer.gate_sh.rows);
  const int64_t hd = hcs_.hc * E_;
  // Row widths of the graph's workspace buffers, by name.
  const std::pair<const char*, int64_t> floats[] = {
      {"hc", hd}, {"mtp_hc", hd}, {"x_in", E_}, {"hc_post", hcs_.hc}, {"hc_comb", hcs_.hc * hcs_.hc},
      {"h", E_}, {"qa", c.q_lora_rank}, {"qr", c.q_lora_rank}, {"q", H_ * D_}, {"kv", D_}, {"o", H_ * D_},
      {"low", int64_t(c.o_groups) * c.o_lora_rank}, {"a", E_}, {"u", E_}, {"router_logits", c.n_expert},
      {"expert_w", K_}, {"moe_out", E_}, {"sh_gate", ff_sh}, {"sh_up", ff_sh}, {"sh_mid", ff_sh},
      {"sh_out", E_}, {"f", E_}, {"ckv", 2 * D_}, {"cgate", 2 * D_}, {"ickv", 2 * ID_}, {"icgate", 2 * ID_},
      {"iq", IH_ * ID_}, {"iw", IH_}, {"z", E_}, {"zn", E_}, {"logits", c.n_vocab}};
  const std::pair<const char*, int64_t> ints[] = {
      {"tokens", 1}, {"next_token", 1}, {"expert_ids", K_}, {"topk", c.indexer_top_k}};
  for (const auto& [name, width] : floats) {
    Buffer& b = bufs_[name];
    b.name = name;
    b.width = width;
    if (std::string_view(name) != "logits") b.f.assign(size_t(max_step * width), 0.0f);
  }
  for (const auto& [name, width] : ints) {
    Buffer& b = bufs_[name];
    b.name = name;
    b.width = width;
    b.i.assign(size_t(max_step * width), 0);
  }
  hc_tmp_.assign(size_t(max_step * hd), 0.0f);
  hc_scratch_.assign(size_t(max_step * (hd + hcs_.mix())), 0.0f);
  if (w.mtp) mtp_cat_.assign(size_t(max_step * hd * 2), 0.0f);
  isel_.assign(size_t(max_step), {});
  iall_.assign(size_t(max_step), 1);

  const PhaseGraph* decode = nullptr;
  const PhaseGraph* draft = nullptr;
  for (const auto& p : g.phases) {
    if (p.kind == PhaseKind::decode) decode = &p;
    if (p.kind == PhaseKind::mtp_draft) draft = &p;
  }
  if (!decode) fail("executor: the op graph has no decode phase");
  buffers_of_graph_ = &g;
  trunk_ = bind(*decode);
  if (draft) mtp_ = bind(*draft);
}

Buffer& Executor::buffer(const std::string& name) {
  auto it = bufs_.find(name);
  if (it == bufs_.end()) fail("executor: no buffer named ", name);
  return it->second;
}

const ref::Weight& Executor::weight(const std::string& name) const {
  auto it = w_.by_name.find(name);
  if (it == w_.by_name.end()) fail("executor: node weight ", name, " is not in the model");
  return it->second;
}

std::vector<Executor::Node> Executor::bind(const PhaseGraph& phase) {
  std::vector<Node> out;
  bool head = false;
  for (const GraphNode& g : phase.nodes) {
    Node n;
    n.g = &g;
    n.op = g.op;
    n.layer = g.layer;
    if (g.layer >= 0) {
      if (uint32_t(g.layer) < c_.n_layer) n.L = &w_.layers[size_t(g.layer)];
      else if (uint32_t(g.layer) == c_.n_layer && w_.mtp) n.L = &w_.mtp->layer;
      else fail("executor: node ", g.name, " names layer ", g.layer, ", the model has ", c_.n_layer);
    }
    for (const WeightUse& u : g.weights) {
      if (!u.tensor) fail("executor: node ", g.name, " has an unbound weight");
      n.w.push_back(&weight(u.tensor->name));
    }
    auto bind_buffers = [&](const std::vector<uint32_t>& ids, std::vector<Buffer*>& dst) {
      for (uint32_t id : ids) {
        const GraphBuffer& b = buffers_of_graph_->buffers.at(id);
        if (is_state(b.kind)) {
          dst.push_back(nullptr);  // the sequence state, resolved per step
          continue;
        }
        auto it = bufs_.find(b.name);
        if (it == bufs_.end()) fail("executor: node ", g.name, " uses buffer ", b.name, ", unknown to the CPU executor");
        dst.push_back(&it->second);
      }
    };
    bind_buffers(g.inputs, n.in);
    bind_buffers(g.outputs, n.out);
    if (g.op == OpKind::output_hc_head) head = true;
    n.head = head;
    if (g.op == OpKind::compressor)
      for (uint32_t id : g.outputs)
        if (buffers_of_graph_->buffers.at(id).kind == BufferKind::index_keys) n.index_keys = true;
    // Arity the dispatch relies on.
    auto need = [&](size_t w, size_t in, size_t o) {
      if (n.w.size() < w || n.in.size() < in || n.out.size() < o)
        fail("executor: node ", g.name, " (", op_kind_name(g.op), ") has ", n.w.size(), " weights, ", n.in.size(),
             " inputs, ", n.out.size(), " outputs; expected at least ", w, ", ", in, ", ", o);
    };
    switch (g.op) {
      case OpKind::embed: need(1, 1, 1); break;
      case OpKind::hc_pre: need(3, 1, 3); break;
      case OpKind::rms_norm: case OpKind::grouped_matmul: need(1, 1, 1); break;
      case OpKind::matmul:
        need(1, 1, 1);
        if (n.w.size() > 2 || n.out.size() != n.w.size())
          fail("executor: matmul node ", g.name, " has ", n.w.size(), " weights and ", n.out.size(),
               " outputs; expected one output per weight, one or two weights");
        break;
      case OpKind::q_head_norm_rope: case OpKind::kv_rope_store: case OpKind::out_inv_rope: need(0, 1, 0); break;
      case OpKind::compressor: need(2, 2, 0); break;
      case OpKind::indexer_topk: need(0, 2, 0); break;
      case OpKind::attention: need(0, 1, 1); break;
      case OpKind::hc_post: need(0, 4, 1); break;
      case OpKind::router: need(0, 1, 2); break;
      case OpKind::moe: need(3, 3, 1); break;
      case OpKind::swiglu: case OpKind::add: need(0, 2, 1); break;
      case OpKind::output_hc_head: need(3, 1, 1); break;
      case OpKind::mtp_embed_proj: need(0, 1, 1); break;
      case OpKind::argmax: case OpKind::sample: break;
      // Multi-GPU collectives: a one-device executor has none to run; run_node refuses them.
      case OpKind::all_reduce: case OpKind::all_gather: case OpKind::moe_combine: break;
    }
    if (n.L == nullptr && (g.op == OpKind::q_head_norm_rope || g.op == OpKind::kv_rope_store ||
                           g.op == OpKind::compressor || g.op == OpKind::indexer_topk || g.op == OpKind::attention ||
                           g.op == OpKind::out_inv_rope || g.op == OpKind::router || g.op == OpKind::moe ||
                           g.op == OpKind::swiglu))
      fail("executor: node ", g.name, " (", op_kind_name(g.op), ") belongs to no layer");
    out.push_back(std::move(n));
  }
  for (size_t i = 0; i < out.size(); ++i)
    out[i].layer_end = out[i].layer >= 0 && (i + 1 == out.size() || out[i + 1].layer != out[i].layer);
  return out;
}

// =============================================================================
// Steps
// =============================================================================

LayerState& Executor::layer_state(const Node& n, SequenceState& st, LayerState* mtp_state) const {
  if (uint32_t(n.layer) < c_.n_layer) return st.layers[size_t(n.layer)];
  if (!mtp_state) fail("executor: node ", n.g->name, " needs the MTP state");
  return *mtp_state;
}

void Executor::forward(SequenceState& st, const int32_t* tokens, int64_t n, int64_t pos0, int64_t logit_from,
                       float* logits) {
  if (n <= 0 || n > max_step_ || n > st.sizing.max_step)
    fail("forward: step of ", n, " tokens, expected 1..", std::min(max_step_, st.sizing.max_step));
  if (pos0 < 0 || pos0 + n > st.sizing.max_context)
    fail("forward: positions ", pos0, "..", pos0 + n - 1, " exceed the context of ", st.sizing.max_context);
  n_ = n;
  pos0_ = pos0;
  head_from_ = logits ? std::clamp<int64_t>(logit_from, 0, n) : n;
  std::memcpy(bufs_["tokens"].i.data(), tokens, size_t(n) * sizeof(int32_t));
  bufs_["logits"].ext = logits;
  if (router_trace.enabled) router_trace.experts.assign(c_.n_layer, {});
  if (indexer_trace.enabled) indexer_trace.picks.assign(c_.n_layer, {});
  if (stream_trace.enabled) stream_trace.after_layer.clear();
  run(trunk_, st, nullptr);
  hidden_ = bufs_["hc"].data();
  if (stream_trace.enabled && head_from_ < n)
    stream_trace.final_hidden.assign(bufs_["zn"].f.begin(), bufs_["zn"].f.begin() + (n - head_from_) * E_);
}

void Executor::mtp_forward(SequenceState& st, const int32_t* tokens, const float* H, int64_t n, int64_t pos0,
                           float* logits) {
  if (!w_.mtp || !st.has_mtp || mtp_.empty()) fail("MTP: the model has no MTP block");
  if (n <= 0 || n > max_step_ || n > st.sizing.max_step) fail("MTP: step of ", n, " rows, expected 1..", max_step_);
  if (pos0 < 0 || pos0 + n > st.sizing.max_context)
    fail("MTP: positions ", pos0, "..", pos0 + n - 1, " exceed the context of ", st.sizing.max_context);
  n_ = n;
  pos0_ = pos0;
  head_from_ = logits ? 0 : n;
  std::memcpy(bufs_["next_token"].i.data(), tokens, size_t(n) * sizeof(int32_t));
  bufs_["logits"].ext = logits;
  mtp_h_ = H;
  const bool trace = stream_trace.enabled;
  stream_trace.enabled = false;
  run(mtp_, st, &st.mtp);
  stream_trace.enabled = trace;
  hidden_ = bufs_["mtp_hc"].data();
}

void Executor::run(const std::vector<Node>& program, SequenceState& st, LayerState* mtp_state) {
  for (const Node& n : program) {
    if (n.head && head_from_ >= n_) continue;  // no logits wanted
    run_node(n, st, mtp_state);
    if (stream_trace.enabled && (n.op == OpKind::embed || (n.layer_end && uint32_t(n.layer) < c_.n_layer))) {
      const float* hc = bufs_["hc"].data();
      stream_trace.after_layer.emplace_back(hc, hc + n_ * hcs_.hc * E_);
    }
    if (node_hook) node_hook(*n.g, *this);
  }
}

void Executor::run_node(const Node& n, SequenceState& st, LayerState* mtp_state) {
  const int64_t rows = n.head ? n_ - head_from_ : n_;
  auto F = [](Buffer* b) { return b->data(); };
  switch (n.op) {
    case OpKind::embed:
      embed(*n.w[0], n.in[0]->i.data(), n_, F(n.out[0]));
      return;
    case OpKind::hc_pre:
      ref::hc_pre(F(n.in[0]), n_, *n.w[0], reinterpret_cast<const float*>(n.w[1]->data),
                  reinterpret_cast<const float*>(n.w[2]->data), hcs_, F(n.out[0]), F(n.out[1]), F(n.out[2]),
                  hc_scratch_.data());
      return;
    case OpKind::rms_norm:
      ref::rms_norm(F(n.in[0]), reinterpret_cast<const float*>(n.w[0]->data), F(n.out[0]), rows, n.w[0]->cols,
                    c_.rms_eps);
      return;
    case OpKind::matmul:
      // One product per weight, output i from weight i (a paired node: two of one input).
      for (size_t i = 0; i < n.w.size(); ++i) {
        const ref::Weight& w = *n.w[i];
        if (n.in[0]->width < w.cols || n.out[i]->width < w.rows)
          fail("executor: ", w.name, " [", w.cols, " -> ", w.rows, "] does not fit buffers ", n.in[0]->name, " / ",
               n.out[i]->name);
        ref::matmul(w, F(n.in[0]), w.cols, rows, F(n.out[i]), w.rows);
      }
      return;
    case OpKind::grouped_matmul:
      ref::grouped_matmul(*n.w[0], c_.o_groups, F(n.in[0]), rows, F(n.out[0]));
      return;
    case OpKind::q_head_norm_rope:
      q_head_norm_rope(F(n.in[0]), rope_for(*n.L), n_, pos0_);
      return;
    case OpKind::kv_rope_store:
      kv_rope_store(layer_state(n, st, mtp_state), F(n.in[0]), rope_for(*n.L), n_, pos0_);
      return;
    case OpKind::compressor: {
      LayerState& S = layer_state(n, st, mtp_state);
      compressor(n.index_keys ? S.index : S.attn, F(n.in[0]), F(n.in[1]), *n.w[0],
                 reinterpret_cast<const float*>(n.w[1]->data), rope_for(*n.L), n.index_keys, n_, pos0_);
      return;
    }
    case OpKind::indexer_topk:
      indexer_topk(*n.L, layer_state(n, st, mtp_state), F(n.in[0]), F(n.in[1]), rope_for(*n.L), n_, pos0_);
      return;
    case OpKind::attention:
      attention(*n.L, layer_state(n, st, mtp_state), F(n.in[0]), F(n.out[0]), n_, pos0_);
      return;
    case OpKind::out_inv_rope:
      for (int64_t t = 0; t < n_; ++t) rope_for(*n.L).apply(F(n.in[0]) + t * H_ * D_, H_, D_, pos0_ + t, true);
      return;
    case OpKind::hc_post: {
      float* X = F(n.in[1]);
      ref::hc_post(F(n.in[0]), X, F(n.in[2]), F(n.in[3]), n_, hcs_, hc_tmp_.data());
      std::memcpy(F(n.out[0]), hc_tmp_.data(), size_t(n_ * hcs_.hc * E_) * sizeof(float));
      return;
    }
    case OpKind::router:
      router(*n.L, F(n.in[0]), bufs_["tokens"].i.data(), n_, n.out[0]->i.data(), F(n.out[1]));
      return;
    case OpKind::moe:
      ref::moe_experts(F(n.in[0]), n_, n.in[1]->i.data(), F(n.in[2]), K_, *n.w[0], *n.w[1], *n.w[2], n.L->clamp_exp,
                       F(n.out[0]));
      return;
    case OpKind::swiglu:
      ref::swiglu(F(n.in[0]), F(n.in[1]), n_ * n.L->gate_sh.rows, n.L->clamp_shexp, F(n.out[0]));
      return;
    case OpKind::add: {
      const float* a = F(n.in[0]);
      const float* b = F(n.in[1]);
      float* o = F(n.out[0]);
      for (int64_t i = 0; i < n_ * E_; ++i) o[i] = a[i] + b[i];
      return;
    }
    case OpKind::output_hc_head:
      ref::hc_head(F(n.in[0]) + head_from_ * hcs_.hc * E_, rows, *n.w[0], reinterpret_cast<const float*>(n.w[1]->data),
                   reinterpret_cast<const float*>(n.w[2]->data), hcs_, F(n.out[0]), hc_scratch_.data());
      return;
    case OpKind::mtp_embed_proj:
      mtp_embed_proj(n, n.in[0]->i.data(), mtp_h_, n_, F(n.out[0]));
      return;
    case OpKind::argmax:
    case OpKind::sample:
      return;  // the session's sampler picks tokens on the host
    case OpKind::all_reduce:
    case OpKind::all_gather:
    case OpKind::moe_combine:
      break;  // multi-GPU plans run on the CUDA executor only
  }
  fail("executor: node ", n.g->name, ": op ", op_kind_name(n.op), " has no CPU implementation");
}

// =============================================================================
// The op kinds' calls
// =============================================================================

void Executor::embed(const ref::Weight& table, const int32_t* tokens, int64_t n, float* hc) {
  for (int64_t t = 0; t < n; ++t) {
    if (tokens[t] < 0 || tokens[t] >= table.rows)
      fail("token id ", tokens[t], " at step row ", t, ": outside the vocabulary [0, ", table.rows, ")");
    ref::weight_row_f32(table, tokens[t], hc_tmp_.data() + t * E_);
  }
  ref::hc_embed(hc_tmp_.data(), n, hcs_, hc);
}

void Executor::q_head_norm_rope(float* q, const ref::Rope& rope, int64_t n, int64_t pos0) {
  parallel_for(n, std::max<int64_t>(1, kThreadWork / (H_ * D_ * 4)), [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      float* qt = q + t * H_ * D_;
      for (int64_t h = 0; h < H_; ++h) ref::rms_norm_row(qt + h * D_, nullptr, qt + h * D_, D_, c_.rms_eps);
      rope.apply(qt, H_, D_, pos0 + t);
    }
  });
}

void Executor::kv_rope_store(LayerState& S, float* kv, const ref::Rope& rope, int64_t n, int64_t pos0) {
  for (int64_t t = 0; t < n; ++t) {
    float* kt = kv + t * D_;
    rope.apply(kt, 1, D_, pos0 + t);
    if (numerics_ == Numerics::official) {
      ref::fp8_kv_round_trip(kt, D_ - c_.rope_dim);
      ref::f16_round_inplace(kt, D_);
    }
    std::memcpy(S.raw_row(pos0 + t), kt, size_t(D_) * sizeof(float));
  }
}

void Executor::compressor(CompressorCache& cc, const float* kv, float* gate, const ref::Weight& ape,
                          const float* norm, const ref::Rope& rope, bool index_keys, int64_t n, int64_t pos0) {
  if (!cc.active()) fail("compressor: layer has no ", index_keys ? "indexer " : "", "compressor state");
  const ref::CompressorShape& s = cc.shape;
  const int64_t w = s.width(), r = s.ratio;
  if (ape.cols != w || ape.rows != r) fail(ape.name, ": shape [", ape.cols, ", ", ape.rows, "], expected [", w, ", ", r, "]");
  ref::CompressorRing ring = cc.ring();
  float* ape_row = hc_scratch_.data();
  for (int64_t t = 0; t < n; ++t) {
    const int64_t p = pos0 + t;
    ref::weight_row_f32(ape, p % r, ape_row);
    float* g = gate + t * w;
    for (int64_t j = 0; j < w; ++j) g[j] += ape_row[j];
    std::memcpy(ring.kv_row(p), kv + t * w, size_t(w) * sizeof(float));
    std::memcpy(ring.score_row(p), g, size_t(w) * sizeof(float));
    if ((p + 1) % r != 0) continue;
    const int64_t win = (p + 1) / r - 1;
    if (win >= cc.max_rows) fail("compressor: row ", win, " beyond the cache's ", cc.max_rows, " rows (context full)");
    float* row = cc.row(win);
    ref::compressor_emit(ring, s, win, norm, c_.rms_eps, rope, row);
    if (numerics_ == Numerics::official) {
      if (index_keys) {
        ref::indexer_qat_row(row, s.dim);
      } else {
        ref::fp8_kv_round_trip(row, s.dim - c_.rope_dim);
        ref::f16_round_inplace(row, s.dim);
      }
    }
  }
}

void Executor::indexer_topk(const LayerW& L, LayerState& S, float* iq, float* iw, const ref::Rope& rope, int64_t n,
                            int64_t pos0) {
  const int64_t r = S.ratio, topk = c_.indexer_top_k;
  const float wscale = float(1.0 / std::sqrt(double(ID_) * double(IH_)));
  for (int64_t t = 0; t < n; ++t) {
    float* qt = iq + t * IH_ * ID_;
    rope.apply(qt, IH_, ID_, pos0 + t);
    if (numerics_ == Numerics::official)
      for (int64_t h = 0; h < IH_; ++h) ref::indexer_qat_row(qt + h * ID_, ID_);
    for (int64_t h = 0; h < IH_; ++h) iw[t * IH_ + h] *= wscale;
  }
  parallel_for(n, 1, [&](int64_t b, int64_t e) {
    thread_local std::vector<double> scores;
    for (int64_t t = b; t < e; ++t) {
      const int64_t N = (pos0 + t + 1) / r;
      if (N <= topk) {
        iall_[t] = 1;
        isel_[t].clear();
        continue;
      }
      iall_[t] = 0;
      scores.resize(size_t(N));
      const float* qt = iq + t * IH_ * ID_;
      const float* wt = iw + t * IH_;
      // Rows split over threads when this is the only token (nested calls run inline).
      parallel_for(N, 256, [&](int64_t r0, int64_t r1) {
        ref::indexer_scores(qt, wt, IH_, ID_, S.index.row(r0), r1 - r0, scores.data() + r0);
      });
      isel_[t].resize(size_t(topk));
      ref::topk_rows(scores.data(), N, topk, isel_[t].data());
    }
  });
  if (indexer_trace.enabled && L.index < indexer_trace.picks.size()) {
    auto& dst = indexer_trace.picks[L.index];
    dst.assign(size_t(n), {});
    for (int64_t t = 0; t < n; ++t) dst[t] = isel_[t];
  }
}

void Executor::attention(const LayerW& L, LayerState& S, const float* q, float* o, int64_t n, int64_t pos0) {
  const int64_t W = c_.sliding_window;
  thread_local std::vector<std::vector<const float*>> keys;
  if (int64_t(keys.size()) < n) keys.resize(size_t(n));
  for (int64_t t = 0; t < n; ++t) {
    const int64_t p = pos0 + t;
    auto& k = keys[t];
    k.clear();
    // Compressed rows first, in row order, then the raw window in position order.
    if (S.kind == LayerKind::HCA || (S.kind == LayerKind::CSA && iall_[t])) {
      const int64_t N = (p + 1) / S.ratio;
      for (int64_t i = 0; i < N; ++i) k.push_back(S.attn.row(i));
    } else if (S.kind == LayerKind::CSA) {
      for (int32_t i : isel_[t]) k.push_back(S.attn.row(i));
    }
    for (int64_t j = std::max<int64_t>(0, p - W + 1); j <= p; ++j) k.push_back(S.raw_row(j));
  }
  const float scale = float(1.0 / std::sqrt(double(D_)));
  const auto* kp = &keys;
  // Heads worth a thread: small models decode faster inline than with a wake-up.
  int64_t work = 0;
  for (int64_t t = 0; t < n; ++t) work += int64_t(keys[t].size()) * D_ * 2 * H_;
  const int64_t grain = std::max<int64_t>(1, kThreadWork * n * H_ / std::max<int64_t>(work, 1));
  parallel_for(n * H_, grain, [&](int64_t b, int64_t e) {
    thread_local std::vector<float> scratch;
    for (int64_t i = b; i < e; ++i) {
      const int64_t t = i / H_, h = i % H_;
      const auto& k = (*kp)[t];
      scratch.resize(size_t(ref::attention_scratch_floats(int64_t(k.size()), D_)));
      ref::attention_head(q + (t * H_ + h) * D_, k.data(), int64_t(k.size()), D_, L.sinks[h], scale,
                          o + (t * H_ + h) * D_, scratch.data());
    }
  });
}

void Executor::router(const LayerW& L, float* logits, const int32_t* tokens, int64_t n, int32_t* ids, float* w) {
  const int64_t NE = c_.n_expert;
  ref::router_scores(logits, n, NE);
  if (L.hash) {
    ref::route_hash(L.tid2eid, c_.n_vocab, tokens, n, NE, K_, ids);
  } else {
    ref::route_topk(logits, L.exp_bias, n, NE, K_, ids);
  }
  ref::route_weights(logits, ids, n, NE, K_, c_.expert_weights_norm, c_.expert_weights_scale, w);
  if (router_trace.enabled && L.index < router_trace.experts.size())
    router_trace.experts[L.index].assign(ids, ids + n * K_);
}

void Executor::mtp_embed_proj(const Node& node, const int32_t* tokens, const float* H, int64_t n, float* out) {
  const MtpW& m = *w_.mtp;
  const int64_t hc = hcs_.hc;
  for (int64_t t = 0; t < n; ++t)
    if (tokens[t] < 0 || tokens[t] >= m.embed.rows) fail("MTP: token id ", tokens[t], " outside the vocabulary");
  if (m.layout == MtpLayout::InFile) {
    // eh_proj · [enorm(e) | hnorm(H_k)] per stream: columns [0, E) take the embedding.
    for (int64_t t = 0; t < n; ++t) {
      float* e = mtp_cat_.data() + t * hc * 2 * E_;
      ref::weight_row_f32(m.embed, tokens[t], e);
      ref::rms_norm_row(e, m.enorm, e, E_, c_.rms_eps);
      for (int64_t k = 0; k < hc; ++k) {
        float* row = e + k * 2 * E_;
        if (k > 0) std::memcpy(row, e, size_t(E_) * sizeof(float));
        ref::rms_norm_row(H + (t * hc + k) * E_, m.hnorm, row + E_, E_, c_.rms_eps);
      }
    }
    ref::matmul(m.eh_proj, mtp_cat_.data(), n * hc, out);
    return;
  }
  // Separate projections: e = e_proj·enorm(emb) (once per row), h_k = h_proj·hnorm(H_k).
  float* e_in = mtp_cat_.data();
  float* e = e_in + n * E_;
  float* hn = e + n * E_;
  for (int64_t t = 0; t < n; ++t) ref::weight_row_f32(m.embed, tokens[t], e_in + t * E_);
  ref::rms_norm(e_in, m.enorm, e_in, n, E_, c_.rms_eps);
  ref::matmul(m.e_proj, e_in, n, e);
  ref::rms_norm(H, m.hnorm, hn, n * hc, E_, c_.rms_eps);
  ref::matmul(m.h_proj, hn, n * hc, out);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t k = 0; k < hc; ++k) {
      float* x = out + (t * hc + k) * E_;
      const float* et = e + t * E_;
      for (int64_t d = 0; d < E_; ++d) x[d] = et[d] + x[d];
    }
}

}  // namespace fp::cpu
