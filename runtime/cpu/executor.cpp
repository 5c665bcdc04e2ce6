// The CPU reference executor (see executor.h): buffers, the op methods, the per-layer
// node order, the output head and the MTP block.
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

ref::RopeParams main_rope(const ModelConfig& c) {
  ref::RopeParams p;
  p.n_rot = c.rope_dim;
  p.base = c.rope_freq_base;
  return p;
}

// Compressed layers, their compressors and the indexer: compress base with YaRN.
ref::RopeParams compress_rope(const ModelConfig& c) {
  ref::RopeParams p;
  p.n_rot = c.rope_dim;
  p.base = c.compress_rope_freq_base;
  p.yarn = c.rope_scaling_factor != 1.0f && c.rope_orig_ctx > 0;
  p.factor = c.rope_scaling_factor;
  p.orig_ctx = c.rope_orig_ctx;
  p.beta_fast = c.yarn_beta_fast;
  p.beta_slow = c.yarn_beta_slow;
  return p;
}

void resize(std::vector<float>& v, int64_t n) { v.assign(size_t(n), 0.0f); }

}  // namespace

Executor::Executor(const ModelConfig& c, const ModelW& w, Numerics numerics, int64_t max_step)
    : c_(c), w_(w), numerics_(numerics), max_step_(max_step) {
  if (max_step <= 0) fail("executor: max_step ", max_step, ", expected > 0");
  hcs_.hc = c.hc_count;
  hcs_.dim = c.n_embd;
  hcs_.norm_eps = c.rms_eps;
  hcs_.hc_eps = c.hc_eps;
  hcs_.sinkhorn_iters = c.hc_sinkhorn_iters;
  rope_main_ = ref::Rope(main_rope(c));
  rope_comp_ = ref::Rope(compress_rope(c));
  E_ = c.n_embd;
  D_ = c.head_dim;
  H_ = c.n_head;
  QL_ = c.q_lora_rank;
  ID_ = c.indexer_head_dim;
  IH_ = c.indexer_heads;
  K_ = c.n_expert_used;
  if (c.n_head_kv != 1) fail("executor: head_count_kv ", c.n_head_kv, ", expected 1 (shared K=V head)");
  if (c.rope_dim > c.head_dim || (ID_ > 0 && c.rope_dim > ID_))
    fail("executor: rope dims ", c.rope_dim, " exceed a head (", c.head_dim, " / indexer ", ID_, ")");

  const int64_t S = max_step, hd = hcs_.hc * E_;
  int64_t ff_sh = 0;
  for (const auto& L : w.layers) ff_sh = std::max(ff_sh, L.gate_sh.rows);
  if (w.mtp) ff_sh = std::max(ff_sh, w.mtp->layer.gate_sh.rows);
  const int64_t cw = std::max<int64_t>(2 * D_, 2 * ID_);
  resize(X_, S * hd);
  resize(X2_, S * hd);
  resize(x_in_, S * E_);
  resize(post_, S * hcs_.hc);
  resize(comb_, S * hcs_.hc * hcs_.hc);
  resize(hc_scratch_, S * (hd + hcs_.mix()));
  resize(h_, S * E_);
  resize(qa_, S * QL_);
  resize(q_, S * H_ * D_);
  resize(kv_, S * D_);
  resize(attn_, S * H_ * D_);
  resize(low_, S * int64_t(c.o_groups) * c.o_lora_rank);
  resize(a_, S * E_);
  resize(ckv_, S * cw);
  resize(cgate_, S * cw);
  resize(ape_row_, cw);
  resize(iq_, S * IH_ * ID_);
  resize(iw_, S * IH_);
  isel_.assign(size_t(S), {});
  iall_.assign(size_t(S), 1);
  resize(u_, S * E_);
  resize(rlog_, S * c.n_expert);
  resize(wts_, S * K_);
  ids_.assign(size_t(S * K_), 0);
  resize(moe_, S * E_);
  resize(sg_, S * ff_sh);
  resize(su_, S * ff_sh);
  resize(smid_, S * ff_sh);
  resize(sh_, S * E_);
  resize(f_, S * E_);
  resize(z_, S * E_);
  if (w.mtp) resize(mtp_e_, S * hd * 2);
}

// =============================================================================
// Op kinds
// =============================================================================

void Executor::embed(const ref::Weight& table, const int32_t* tokens, int64_t n) {
  for (int64_t t = 0; t < n; ++t) {
    if (tokens[t] < 0 || tokens[t] >= table.rows)
      fail("token id ", tokens[t], " at step row ", t, ": outside the vocabulary [0, ", table.rows, ")");
    ref::weight_row_f32(table, tokens[t], x_in_.data() + t * E_);
  }
  ref::hc_embed(x_in_.data(), n, hcs_, X_.data());
}

void Executor::hc_pre(const ref::Weight& fn, const float* scale, const float* base, int64_t n) {
  ref::hc_pre(X_.data(), n, fn, scale, base, hcs_, x_in_.data(), post_.data(), comb_.data(), hc_scratch_.data());
}

void Executor::rms_norm(const float* x, const float* w, float* y, int64_t n, int64_t dim) {
  ref::rms_norm(x, w, y, n, dim, c_.rms_eps);
}

void Executor::matmul(const ref::Weight& w, const float* x, int64_t n, float* y) { ref::matmul(w, x, n, y); }

void Executor::q_head_norm_rope(const ref::Rope& rope, int64_t n, int64_t pos0) {
  parallel_for(n, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      float* qt = q_.data() + t * H_ * D_;
      for (int64_t h = 0; h < H_; ++h) ref::rms_norm_row(qt + h * D_, nullptr, qt + h * D_, D_, c_.rms_eps);
      rope.apply(qt, H_, D_, pos0 + t);
    }
  });
}

void Executor::kv_rope_store(LayerState& S, const ref::Rope& rope, int64_t n, int64_t pos0) {
  for (int64_t t = 0; t < n; ++t) {
    float* kt = kv_.data() + t * D_;
    rope.apply(kt, 1, D_, pos0 + t);
    if (numerics_ == Numerics::official) {
      ref::fp8_kv_round_trip(kt, D_ - c_.rope_dim);
      ref::f16_round_inplace(kt, D_);
    }
    std::memcpy(S.raw_row(pos0 + t), kt, size_t(D_) * sizeof(float));
  }
}

void Executor::compressor(CompressorCache& cc, const ref::Weight& kv_w, const ref::Weight& gate_w,
                          const ref::Weight& ape, const float* norm, const ref::Rope& rope, bool index_keys,
                          int64_t n, int64_t pos0) {
  const ref::CompressorShape& s = cc.shape;
  const int64_t w = s.width(), r = s.ratio;
  matmul(kv_w, h_.data(), n, ckv_.data());
  matmul(gate_w, h_.data(), n, cgate_.data());
  ref::CompressorRing ring = cc.ring();
  for (int64_t t = 0; t < n; ++t) {
    const int64_t p = pos0 + t;
    ref::weight_row_f32(ape, p % r, ape_row_.data());
    float* g = cgate_.data() + t * w;
    for (int64_t j = 0; j < w; ++j) g[j] += ape_row_[j];
    std::memcpy(ring.kv_row(p), ckv_.data() + t * w, size_t(w) * sizeof(float));
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

void Executor::indexer_topk(const LayerW& L, LayerState& S, const ref::Rope& rope, int64_t n, int64_t pos0) {
  const int64_t r = S.ratio, topk = c_.indexer_top_k;
  matmul(L.idx_q_b, qa_.data(), n, iq_.data());
  matmul(L.idx_proj, h_.data(), n, iw_.data());
  const float wscale = float(1.0 / std::sqrt(double(ID_) * double(IH_)));
  for (int64_t t = 0; t < n; ++t) {
    float* qt = iq_.data() + t * IH_ * ID_;
    rope.apply(qt, IH_, ID_, pos0 + t);
    if (numerics_ == Numerics::official)
      for (int64_t h = 0; h < IH_; ++h) ref::indexer_qat_row(qt + h * ID_, ID_);
    for (int64_t h = 0; h < IH_; ++h) iw_[t * IH_ + h] *= wscale;
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
      const float* qt = iq_.data() + t * IH_ * ID_;
      const float* wt = iw_.data() + t * IH_;
      // Rows split over threads when this is the only token (nested calls run inline).
      parallel_for(N, 256, [&](int64_t r0, int64_t r1) {
        ref::indexer_scores(qt, wt, IH_, ID_, S.index.row(r0), r1 - r0, scores.data() + r0);
      });
      isel_[t].resize(size_t(topk));
      ref::topk_rows(scores.data(), N, topk, isel_[t].data());
    }
  });
  if (indexer_trace.enabled) {
    auto& dst = indexer_trace.picks[L.index];
    dst.assign(size_t(n), {});
    for (int64_t t = 0; t < n; ++t) dst[t] = isel_[t];
  }
}

void Executor::attention(const LayerW& L, LayerState& S, int64_t n, int64_t pos0) {
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
    for (int64_t q = std::max<int64_t>(0, p - W + 1); q <= p; ++q) k.push_back(S.raw_row(q));
  }
  const float scale = float(1.0 / std::sqrt(double(D_)));
  const auto* kp = &keys;
  parallel_for(n * H_, 1, [&](int64_t b, int64_t e) {
    thread_local std::vector<float> scratch;
    for (int64_t i = b; i < e; ++i) {
      const int64_t t = i / H_, h = i % H_;
      const auto& k = (*kp)[t];
      scratch.resize(size_t(ref::attention_scratch_floats(int64_t(k.size()), D_)));
      ref::attention_head(q_.data() + (t * H_ + h) * D_, k.data(), int64_t(k.size()), D_, L.sinks[h], scale,
                          attn_.data() + (t * H_ + h) * D_, scratch.data());
    }
  });
}

void Executor::out_inv_rope(const ref::Rope& rope, int64_t n, int64_t pos0) {
  for (int64_t t = 0; t < n; ++t) rope.apply(attn_.data() + t * H_ * D_, H_, D_, pos0 + t, true);
}

void Executor::grouped_matmul(const ref::Weight& w, int64_t n) {
  ref::grouped_matmul(w, c_.o_groups, attn_.data(), n, low_.data());
}

void Executor::hc_post(const float* a, int64_t n) {
  ref::hc_post(a, X_.data(), post_.data(), comb_.data(), n, hcs_, X2_.data());
  std::swap(X_, X2_);
}

void Executor::router(const LayerW& L, const int32_t* tokens, int64_t n) {
  const int64_t NE = c_.n_expert;
  matmul(L.gate_inp, u_.data(), n, rlog_.data());
  ref::router_scores(rlog_.data(), n, NE);
  if (L.hash) {
    ref::route_hash(L.tid2eid, c_.n_vocab, tokens, n, NE, K_, ids_.data());
  } else {
    ref::route_topk(rlog_.data(), L.exp_bias, n, NE, K_, ids_.data());
  }
  ref::route_weights(rlog_.data(), ids_.data(), n, NE, K_, c_.expert_weights_norm, c_.expert_weights_scale,
                     wts_.data());
  if (router_trace.enabled && L.index < router_trace.experts.size())
    router_trace.experts[L.index].assign(ids_.begin(), ids_.begin() + n * K_);
}

void Executor::moe(const LayerW& L, int64_t n) {
  ref::moe_experts(u_.data(), n, ids_.data(), wts_.data(), K_, L.gate_exps, L.up_exps, L.down_exps, L.clamp_exp,
                   moe_.data());
}

void Executor::swiglu(float limit, int64_t n) {
  ref::swiglu(sg_.data(), su_.data(), n, limit, smid_.data());
}

void Executor::add(int64_t n) {
  for (int64_t i = 0; i < n * E_; ++i) f_[i] = moe_[i] + sh_[i];
}

void Executor::output_hc_head(const ref::Weight& fn, const float* scale, const float* base, int64_t row0,
                              int64_t n) {
  ref::hc_head(X_.data() + row0 * hcs_.hc * E_, n, fn, scale, base, hcs_, z_.data(), hc_scratch_.data());
}

void Executor::mtp_embed_proj(const MtpW& m, const int32_t* tokens, const float* H, int64_t n) {
  const int64_t hc = hcs_.hc;
  if (m.layout == MtpLayout::InFile) {
    // eh_proj · [enorm(e) | hnorm(H_k)] per stream: columns [0, E) take the embedding.
    for (int64_t t = 0; t < n; ++t) {
      if (tokens[t] < 0 || tokens[t] >= m.embed.rows) fail("MTP: token id ", tokens[t], " outside the vocabulary");
      float* e = mtp_e_.data() + t * hc * 2 * E_;
      ref::weight_row_f32(m.embed, tokens[t], e);
      ref::rms_norm_row(e, m.enorm, e, E_, c_.rms_eps);
      for (int64_t k = 0; k < hc; ++k) {
        float* row = e + k * 2 * E_;
        if (k > 0) std::memcpy(row, e, size_t(E_) * sizeof(float));
        ref::rms_norm_row(H + (t * hc + k) * E_, m.hnorm, row + E_, E_, c_.rms_eps);
      }
    }
    matmul(m.eh_proj, mtp_e_.data(), n * hc, X_.data());
    return;
  }
  for (int64_t t = 0; t < n; ++t) {
    if (tokens[t] < 0 || tokens[t] >= m.embed.rows) fail("MTP: token id ", tokens[t], " outside the vocabulary");
    ref::weight_row_f32(m.embed, tokens[t], mtp_e_.data() + t * E_);
  }
  rms_norm(mtp_e_.data(), m.enorm, mtp_e_.data(), n, E_);
  matmul(m.e_proj, mtp_e_.data(), n, a_.data());
  rms_norm(H, m.hnorm, X2_.data(), n * hc, E_);  // per stream
  matmul(m.h_proj, X2_.data(), n * hc, X_.data());
  for (int64_t t = 0; t < n; ++t)
    for (int64_t k = 0; k < hc; ++k) {
      float* x = X_.data() + (t * hc + k) * E_;
      const float* e = a_.data() + t * E_;
      for (int64_t d = 0; d < E_; ++d) x[d] = e[d] + x[d];
    }
}

// =============================================================================
// Node order
// =============================================================================

void Executor::layer(const LayerW& L, LayerState& S, const int32_t* tokens, int64_t n, int64_t pos0) {
  const ref::Rope& rope = rope_for(L);
  // ---- attention sub-layer
  hc_pre(L.hc_attn_fn, L.hc_attn_scale, L.hc_attn_base, n);
  rms_norm(x_in_.data(), L.attn_norm, h_.data(), n, E_);
  matmul(L.q_a, h_.data(), n, qa_.data());
  rms_norm(qa_.data(), L.q_a_norm, qa_.data(), n, QL_);
  matmul(L.q_b, qa_.data(), n, q_.data());
  q_head_norm_rope(rope, n, pos0);
  matmul(L.kv, h_.data(), n, kv_.data());
  rms_norm(kv_.data(), L.kv_norm, kv_.data(), n, D_);
  kv_rope_store(S, rope, n, pos0);
  if (S.kind != LayerKind::SWA)
    compressor(S.attn, L.comp_kv, L.comp_gate, L.comp_ape, L.comp_norm, rope, false, n, pos0);
  if (S.kind == LayerKind::CSA) {
    compressor(S.index, L.idx_comp_kv, L.idx_comp_gate, L.idx_comp_ape, L.idx_comp_norm, rope, true, n, pos0);
    indexer_topk(L, S, rope, n, pos0);
  }
  attention(L, S, n, pos0);
  out_inv_rope(rope, n, pos0);
  grouped_matmul(L.out_a, n);
  matmul(L.out_b, low_.data(), n, a_.data());
  hc_post(a_.data(), n);
  // ---- FFN sub-layer
  hc_pre(L.hc_ffn_fn, L.hc_ffn_scale, L.hc_ffn_base, n);
  rms_norm(x_in_.data(), L.ffn_norm, u_.data(), n, E_);
  router(L, tokens, n);
  moe(L, n);
  matmul(L.gate_sh, u_.data(), n, sg_.data());
  matmul(L.up_sh, u_.data(), n, su_.data());
  swiglu(L.clamp_shexp, n * L.gate_sh.rows);
  matmul(L.down_sh, smid_.data(), n, sh_.data());
  add(n);
  hc_post(f_.data(), n);
}

void Executor::head(const ref::Weight& fn, const float* scale, const float* base, const float* norm,
                    const ref::Weight& out, int64_t row0, int64_t n, float* logits) {
  output_hc_head(fn, scale, base, row0, n);
  rms_norm(z_.data(), norm, z_.data(), n, E_);
  matmul(out, z_.data(), n, logits);
}

void Executor::forward(SequenceState& st, const int32_t* tokens, int64_t n, int64_t pos0, int64_t logit_from,
                       float* logits) {
  if (n <= 0 || n > max_step_ || n > st.sizing.max_step)
    fail("forward: step of ", n, " tokens, expected 1..", std::min(max_step_, st.sizing.max_step));
  if (pos0 < 0 || pos0 + n > st.sizing.max_context)
    fail("forward: positions ", pos0, "..", pos0 + n - 1, " exceed the context of ", st.sizing.max_context);
  if (router_trace.enabled) router_trace.experts.assign(c_.n_layer, {});
  if (indexer_trace.enabled) indexer_trace.picks.assign(c_.n_layer, {});
  const int64_t hd = hcs_.hc * E_;
  auto trace = [&] {
    if (stream_trace.enabled) stream_trace.after_layer.emplace_back(X_.begin(), X_.begin() + n * hd);
  };
  if (stream_trace.enabled) stream_trace.after_layer.clear();
  embed(w_.token_embd, tokens, n);
  trace();
  for (uint32_t l = 0; l < c_.n_layer; ++l) {
    layer(w_.layers[l], st.layers[l], tokens, n, pos0);
    trace();
  }
  if (logits && logit_from < n) {
    head(w_.output_hc_fn, w_.output_hc_scale, w_.output_hc_base, w_.output_norm, w_.output, logit_from,
         n - logit_from, logits);
    if (stream_trace.enabled) stream_trace.final_hidden.assign(z_.begin(), z_.begin() + (n - logit_from) * E_);
  }
}

void Executor::mtp_forward(SequenceState& st, const int32_t* tokens, const float* H, int64_t n, int64_t pos0,
                           float* logits) {
  if (!w_.mtp || !st.has_mtp) fail("MTP: the model has no MTP block");
  if (n <= 0 || n > max_step_ || n > st.sizing.max_step) fail("MTP: step of ", n, " rows, expected 1..", max_step_);
  if (pos0 < 0 || pos0 + n > st.sizing.max_context)
    fail("MTP: positions ", pos0, "..", pos0 + n - 1, " exceed the context of ", st.sizing.max_context);
  const MtpW& m = *w_.mtp;
  mtp_embed_proj(m, tokens, H, n);
  layer(m.layer, st.mtp, tokens, n, pos0);
  if (logits) head(m.hc_head_fn, m.hc_head_scale, m.hc_head_base, m.norm, m.head, 0, n, logits);
}

}  // namespace fp::cpu
