// TensorRef -> ref::Weight / f32 pointer conversion (see weights.h).
#include "runtime/cpu/weights.h"

#include "ops/core/error.h"

namespace fp::cpu {
namespace {

ref::Weight W(const TensorData& d, const TensorRef& t) {
  ref::Weight w;
  if (!t) return w;
  w.type = t.type();
  w.data = d(t);
  w.cols = t.ne(0);
  w.rows = t.ne(1);
  w.experts = t.ne(2);
  w.name = t.name();
  return w;
}

const float* F(const TensorData& d, const TensorRef& t) {
  if (!t) return nullptr;
  if (t.type() != DType::F32) fail(t.name(), ": dtype ", dtype_name(t.type()), ", expected F32");
  return reinterpret_cast<const float*>(d(t));
}

const int32_t* I(const TensorData& d, const TensorRef& t) {
  if (!t) return nullptr;
  if (t.type() != DType::I32) fail(t.name(), ": dtype ", dtype_name(t.type()), ", expected I32");
  return reinterpret_cast<const int32_t*>(d(t));
}

LayerW bind_layer(const TensorData& d, const ModelConfig& c, const LayerTensors& t, uint32_t l) {
  LayerW w;
  w.index = l;
  w.kind = c.layer_kind(l);
  w.ratio = c.compress_ratio(l);
  const bool mtp = l == c.n_layer;
  w.hash = !mtp && c.hash_routed(l);
  w.clamp_exp = mtp ? c.mtp_swiglu_clamp_exp : c.swiglu_clamp_exp.at(l);
  w.clamp_shexp = mtp ? c.mtp_swiglu_clamp_shexp : c.swiglu_clamp_shexp.at(l);
  w.hc_attn_fn = W(d, t.hc_attn_fn);
  w.hc_attn_scale = F(d, t.hc_attn_scale);
  w.hc_attn_base = F(d, t.hc_attn_base);
  w.attn_norm = F(d, t.attn_norm);
  w.q_a = W(d, t.attn_q_a);
  w.q_a_norm = F(d, t.attn_q_a_norm);
  w.q_b = W(d, t.attn_q_b);
  w.kv = W(d, t.attn_kv);
  w.kv_norm = F(d, t.attn_kv_a_norm);
  w.sinks = F(d, t.attn_sinks);
  w.out_a = W(d, t.attn_output_a);
  w.out_b = W(d, t.attn_output_b);
  w.comp_kv = W(d, t.attn_compressor_kv);
  w.comp_gate = W(d, t.attn_compressor_gate);
  w.comp_ape = W(d, t.attn_compressor_ape);
  w.comp_norm = F(d, t.attn_compressor_norm);
  w.idx_q_b = W(d, t.indexer_attn_q_b);
  w.idx_proj = W(d, t.indexer_proj);
  w.idx_comp_kv = W(d, t.indexer_compressor_kv);
  w.idx_comp_gate = W(d, t.indexer_compressor_gate);
  w.idx_comp_ape = W(d, t.indexer_compressor_ape);
  w.idx_comp_norm = F(d, t.indexer_compressor_norm);
  w.hc_ffn_fn = W(d, t.hc_ffn_fn);
  w.hc_ffn_scale = F(d, t.hc_ffn_scale);
  w.hc_ffn_base = F(d, t.hc_ffn_base);
  w.ffn_norm = F(d, t.ffn_norm);
  w.gate_inp = W(d, t.ffn_gate_inp);
  w.exp_bias = F(d, t.exp_probs_b);
  w.tid2eid = I(d, t.ffn_gate_tid2eid);
  w.gate_exps = W(d, t.ffn_gate_exps);
  w.up_exps = W(d, t.ffn_up_exps);
  w.down_exps = W(d, t.ffn_down_exps);
  w.gate_sh = W(d, t.ffn_gate_shexp);
  w.up_sh = W(d, t.ffn_up_shexp);
  w.down_sh = W(d, t.ffn_down_shexp);
  if (w.hash && !w.tid2eid) fail("layer ", l, ": hash-routed but ffn_gate_tid2eid is missing");
  return w;
}

}  // namespace

ModelW bind_weights(const Model& m) {
  return bind_weights(m, [](const TensorRef& t) { return t.bytes().data(); });
}

ModelW bind_weights(const Model& m, const TensorData& d) {
  const ModelConfig& c = m.config();
  ModelW w;
  const GlobalTensors& g = m.globals();
  w.token_embd = W(d, g.token_embd);
  w.output = W(d, g.output);
  w.output_hc_fn = W(d, g.output_hc_fn);
  w.output_hc_base = F(d, g.output_hc_base);
  w.output_hc_scale = F(d, g.output_hc_scale);
  w.output_norm = F(d, g.output_norm);
  for (uint32_t l = 0; l < c.n_layer; ++l) w.layers.push_back(bind_layer(d, c, m.layer(l), l));
  for (const gguf::File* f : {&m.file(), m.mtp_file()}) {
    if (!f) continue;
    for (const auto& t : f->tensors()) w.by_name[t.name] = W(d, TensorRef{f, &t});
  }
  if (m.mtp_available()) {
    const MtpTensors& t = m.mtp();
    MtpW x;
    x.layout = t.layout;
    x.layer = bind_layer(d, c, t.layer, c.n_layer);
    x.e_proj = W(d, t.e_proj);
    x.h_proj = W(d, t.h_proj);
    x.eh_proj = W(d, t.eh_proj);
    x.enorm = F(d, t.enorm);
    x.hnorm = F(d, t.hnorm);
    x.norm = F(d, t.norm);
    x.hc_head_fn = W(d, t.hc_head_fn);
    x.hc_head_base = F(d, t.hc_head_base);
    x.hc_head_scale = F(d, t.hc_head_scale);
    x.embed = t.embed ? W(d, t.embed) : w.token_embd;
    x.head = t.head ? W(d, t.head) : w.output;
    w.mtp = std::move(x);
  }
  return w;
}

}  // namespace fp::cpu
