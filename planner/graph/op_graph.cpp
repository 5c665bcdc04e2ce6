// Builds the per-phase node lists of the DS4 forward pass (MODEL.md §5 decode, §6
// prefill, §7 MTP) from a bound Model. The builder owns the buffer table: activation
// buffers are shared by every layer and sized for the largest step; KV rows, index keys
// and compressor state are per layer and sized for the max context.
#include "planner/graph/op_graph.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "ops/core/error.h"

namespace fp {

const char* phase_kind_name(PhaseKind k) {
  switch (k) {
    case PhaseKind::prefill: return "prefill";
    case PhaseKind::decode: return "decode";
    case PhaseKind::mtp_draft: return "mtp_draft";
    case PhaseKind::mtp_verify: return "mtp_verify";
  }
  return "?";
}

const char* parallel_name(Parallel p) {
  switch (p) {
    case Parallel::single: return "single";
    case Parallel::replicated: return "replicated";
    case Parallel::tensor_split: return "tensor_split";
    case Parallel::expert_split: return "expert_split";
    case Parallel::collective: return "collective";
  }
  return "?";
}

const char* buffer_kind_name(BufferKind k) {
  switch (k) {
    case BufferKind::activation: return "activation";
    case BufferKind::kv_raw: return "kv_raw";
    case BufferKind::kv_compressed: return "kv_compressed";
    case BufferKind::index_keys: return "index_keys";
    case BufferKind::compressor_state: return "compressor_state";
    case BufferKind::workspace: return "workspace";
    case BufferKind::io: return "io";
  }
  return "?";
}

bool pairs_in_one_node(DType a_type, int64_t a_cols, int64_t a_rows, DType b_type, int64_t b_cols, int64_t b_rows) {
  return a_type == b_type && a_cols == b_cols && a_rows == b_rows;
}

namespace {

uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

// Compressor geometry (MODEL.md §5.8): ratio 4 overlaps two windows (c = 2).
uint32_t overlap(uint32_t ratio) { return ratio == kCsaRatio ? 2 : 1; }

uint64_t compressor_state_bytes(uint32_t ratio, uint32_t d) {
  const uint64_t c = overlap(ratio);
  return c * ratio * c * d * 2 * sizeof(float);  // kv + score rows, F32
}

}  // namespace

std::vector<KvSizes> kv_sizes(const ModelConfig& c, bool has_mtp, uint64_t context, DType kv_dtype) {
  const uint64_t kvb = static_cast<uint64_t>(traits(kv_dtype).bytes);
  std::vector<KvSizes> out;
  const uint32_t n = c.n_layer + (has_mtp ? 1 : 0);
  for (uint32_t l = 0; l < n; ++l) {
    KvSizes s;
    s.layer = l;
    s.ratio = l < c.n_layer ? c.compress_ratios[l] : 0;
    s.raw_rows = c.sliding_window;
    s.raw_bytes = uint64_t(s.raw_rows) * c.head_dim * kvb;
    if (s.ratio > 0) {
      s.compressed_rows = std::max<uint64_t>(1, ceil_div(context, s.ratio));
      s.compressed_bytes = s.compressed_rows * c.head_dim * kvb;
      s.state_bytes = compressor_state_bytes(s.ratio, c.head_dim);
      if (s.ratio == kCsaRatio) {
        s.index_rows = s.compressed_rows;
        s.index_bytes = s.index_rows * c.indexer_head_dim * 4;  // indexer keys stay f32 (FP4 round trip: not F16 values)
        s.state_bytes += compressor_state_bytes(s.ratio, c.indexer_head_dim);
      }
    }
    out.push_back(s);
  }
  return out;
}

double expected_busiest_experts(uint32_t experts, uint32_t used, uint32_t devices) {
  if (devices <= 1 || used == 0) return used;
  // Ways to pick `used` experts with at most m on every device, by a product of
  // polynomials (one per device, its coefficients the binomials of its slice); the
  // expected maximum is the sum over m of P(max > m).
  auto binom = [](double n, uint32_t r) {
    double v = 1;
    for (uint32_t i = 0; i < r; ++i) v = v * (n - i) / (i + 1);
    return v;
  };
  const double all = binom(experts, used);
  double expect = 0;
  for (uint32_t m = 0; m < used; ++m) {
    std::vector<double> ways(used + 1, 0.0);
    ways[0] = 1;
    for (uint32_t g = 0; g < devices; ++g) {
      const uint64_t size = uint64_t(g + 1) * experts / devices - uint64_t(g) * experts / devices;
      std::vector<double> next(used + 1, 0.0);
      for (uint32_t have = 0; have <= used; ++have) {
        if (ways[have] == 0) continue;
        for (uint32_t c = 0; c <= m && c <= size && have + c <= used; ++c) next[have + c] += ways[have] * binom(double(size), c);
      }
      ways = std::move(next);
    }
    expect += 1.0 - ways[used] / all;
  }
  return expect;
}

std::string parallel_rejection(const Model& m, const ParallelOptions& par) {
  const ModelConfig& c = m.config();
  const uint32_t n = par.devices;
  if (n <= 1) return "";
  // A column split cuts every row of the tensor; each slice must hold whole quant blocks.
  auto columns_ok = [&](const TensorRef& t) {
    if (!t) return std::string();
    const int64_t cols = t.ne(0);
    const int64_t block = traits(t.type()).block;
    if (cols % n != 0 || (cols / n) % block != 0)
      return str(t.info->name, ": ", cols, " columns do not split into ", n, " slices of whole ", dtype_name(t.type()),
                 " blocks (", block, " elements)");
    return std::string();
  };
  if (par.attention_split) {
    if (c.n_head % n != 0) return str("attention: ", c.n_head, " heads do not split over ", n, " devices");
    if (c.o_groups % n != 0) return str("attention: ", c.o_groups, " output groups do not split over ", n, " devices");
    for (uint32_t l = 0; l < c.n_layer; ++l)
      if (auto why = columns_ok(m.layer(l).attn_output_b); !why.empty()) return "attention: " + why;
  }
  if (par.shared_split) {
    if (c.n_expert_shared == 0) return "shared expert: the model has none";
    if (c.shexp_ff() % n != 0) return str("shared expert: width ", c.shexp_ff(), " does not split over ", n, " devices");
    for (uint32_t l = 0; l < c.n_layer; ++l)
      if (auto why = columns_ok(m.layer(l).ffn_down_shexp); !why.empty()) return "shared expert: " + why;
  }
  return "";
}

namespace {

class Builder {
 public:
  Builder(const Model& m, const GraphOptions& o) : m_(m), c_(m.config()), o_(o) {
    kvb_ = traits(o.kv_dtype).bytes;
    n_ = std::max<uint32_t>(o.par.devices, 1);
    max_tokens_ = std::max<uint32_t>(o.prefill_buckets.empty() ? 1 : o.prefill_buckets.back(), 1);
    head_tokens_ = 1;
    if (m.mtp_available()) {
      max_tokens_ = std::max(max_tokens_, o.mtp_depth + 1);
      head_tokens_ = o.mtp_depth + 1;
    }
    make_buffers();
  }

  OpGraph build() {
    uint32_t lo = 1;
    for (uint32_t hi : o_.prefill_buckets) {
      PhaseGraph p{PhaseKind::prefill, str("prefill.", lo, "-", hi), lo, hi, {}};
      trunk(p, hi, 1, OpKind::sample);
      g_.phases.push_back(std::move(p));
      lo = hi + 1;
    }
    PhaseGraph d{PhaseKind::decode, "decode", 1, 1, {}};
    trunk(d, 1, 1, OpKind::sample);
    g_.phases.push_back(std::move(d));
    if (m_.mtp_available()) {
      PhaseGraph draft{PhaseKind::mtp_draft, "mtp_draft", 1, 1, {}};
      mtp_draft(draft);
      g_.phases.push_back(std::move(draft));
      const uint32_t t = o_.mtp_depth + 1;
      PhaseGraph verify{PhaseKind::mtp_verify, "mtp_verify", t, t, {}};
      trunk(verify, t, t, OpKind::argmax);
      g_.phases.push_back(std::move(verify));
    }
    return std::move(g_);
  }

 private:
  // ---- buffers ---------------------------------------------------------------

  uint32_t add_buffer(std::string name, BufferKind kind, int32_t layer, DType dtype, uint64_t bytes) {
    const auto id = static_cast<uint32_t>(g_.buffers.size());
    ids_[name] = id;
    g_.buffers.push_back({std::move(name), kind, layer, dtype, bytes});
    return id;
  }

  // An activation buffer of `per_token` elements per row, `rows` rows.
  void act(const std::string& name, uint64_t per_token, DType dtype = DType::F32, uint64_t rows = 0) {
    if (per_token == 0) return;
    const uint64_t esize = traits(dtype).bytes;
    per_token_bytes_[name] = per_token * esize;
    add_buffer(name, BufferKind::activation, -1, dtype, (rows ? rows : max_tokens_) * per_token * esize);
  }

  void make_buffers() {
    const ModelConfig& c = c_;
    const uint32_t csa_width = 2 * c.head_dim;
    bool any_csa = false, any_compressed = false;
    for (uint32_t l = 0; l < c.n_layer; ++l) {
      any_csa |= c.compress_ratios[l] == kCsaRatio;
      any_compressed |= c.compress_ratios[l] > 0;
    }
    add_buffer("tokens", BufferKind::io, -1, DType::I32, uint64_t(max_tokens_) * 4);
    per_token_bytes_["tokens"] = 4;
    act("hc", c.hc_dim());
    if (m_.mtp_available()) act("mtp_hc", c.hc_dim());
    act("hc_post", c.hc_count);
    act("hc_comb", uint64_t(c.hc_count) * c.hc_count);
    act("x_in", c.n_embd);
    act("h", c.n_embd);
    act("qa", c.q_lora_rank);
    act("qr", c.q_lora_rank);
    act("q", c.q_dim());
    act("kv", c.head_dim);
    if (any_compressed) {
      act("ckv", any_csa ? csa_width : c.head_dim);
      act("cgate", any_csa ? csa_width : c.head_dim);
    }
    if (any_csa) {
      act("ickv", 2 * c.indexer_head_dim);
      act("icgate", 2 * c.indexer_head_dim);
      act("iq", c.indexer_q_dim());
      act("iw", c.indexer_heads);
      act("topk", c.indexer_top_k, DType::I32);
    }
    act("o", c.q_dim());
    act("low", uint64_t(c.o_groups) * c.o_lora_rank);
    act("a", c.n_embd);
    act("u", c.n_embd);
    act("router_logits", c.n_expert);
    act("expert_ids", c.n_expert_used, DType::I32);
    act("expert_w", c.n_expert_used);
    act("moe_out", c.n_embd);
    // Multi-GPU: each device's routed-expert outputs per (token, slot), zeros in the slots
    // of experts it does not hold, summed over the devices before the combine.
    if (n_ > 1) act("moe_slots", uint64_t(c.n_expert_used) * c.n_embd);
    if (c.n_expert_shared > 0) {
      act("sh_gate", c.shexp_ff());
      act("sh_up", c.shexp_ff());
      act("sh_mid", c.shexp_ff());
      act("sh_out", c.n_embd);
      act("f", c.n_embd);
    }
    act("z", c.n_embd, DType::F32, head_tokens_);
    act("zn", c.n_embd, DType::F32, head_tokens_);
    add_buffer("logits", BufferKind::io, -1, DType::F32, uint64_t(head_tokens_) * c.n_vocab * 4);
    per_token_bytes_["logits"] = uint64_t(c.n_vocab) * 4;
    add_buffer("next_token", BufferKind::io, -1, DType::I32, uint64_t(head_tokens_) * 4);
    per_token_bytes_["next_token"] = 4;

    // Persistent per-layer state, sized for the max context.
    for (const KvSizes& s : kv_sizes(c, m_.mtp_available(), o_.max_context, o_.kv_dtype)) {
      const std::string p = s.layer < c.n_layer ? str("blk.", s.layer, ".") : std::string("mtp.");
      const auto l = static_cast<int32_t>(s.layer);
      add_buffer(p + "kv_raw", BufferKind::kv_raw, l, o_.kv_dtype, s.raw_bytes);
      if (s.compressed_bytes) add_buffer(p + "kv_compressed", BufferKind::kv_compressed, l, o_.kv_dtype, s.compressed_bytes);
      if (s.index_bytes) add_buffer(p + "index_keys", BufferKind::index_keys, l, DType::F32, s.index_bytes);
      if (s.ratio > 0) {
        add_buffer(p + "compressor_state", BufferKind::compressor_state, l, DType::F32,
                   compressor_state_bytes(s.ratio, c.head_dim));
        if (s.ratio == kCsaRatio)
          add_buffer(p + "indexer_compressor_state", BufferKind::compressor_state, l, DType::F32,
                     compressor_state_bytes(s.ratio, c.indexer_head_dim));
      }
    }
  }

  uint32_t id(const std::string& name) const {
    auto it = ids_.find(name);
    if (it == ids_.end()) fail("op graph: no buffer ", name);
    return it->second;
  }

  // ---- nodes -----------------------------------------------------------------

  GraphNode& node(PhaseGraph& p, OpKind op, std::string name, int32_t layer, uint32_t tokens,
                  std::initializer_list<std::string> in, std::initializer_list<std::string> out) {
    GraphNode n;
    n.op = op;
    n.name = std::move(name);
    n.layer = layer;
    n.shape.op = op;
    n.shape.tokens = tokens;
    for (const auto& b : in) n.inputs.push_back(id(b));
    for (const auto& b : out) n.outputs.push_back(id(b));
    // Activation traffic: every activation / io buffer read or written, one row per token.
    for (const auto& list : {in, out})
      for (const auto& b : list) {
        auto it = per_token_bytes_.find(b);
        if (it != per_token_bytes_.end()) n.shape.act_bytes += static_cast<double>(it->second) * tokens;
      }
    if (n_ > 1) {
      n.device = -1;
      n.parallel = Parallel::replicated;
    }
    p.nodes.push_back(std::move(n));
    return p.nodes.back();
  }

  // ---- multi-GPU ---------------------------------------------------------------
  // A split node runs on every device over 1/N of its weights: rows (the outer dim,
  // outputs m) or columns (inputs k). Shapes are per device: what one GPU computes.

  void split_rows(GraphNode* n) {
    if (!n) return;
    n->parallel = Parallel::tensor_split;
    n->shape.m = static_cast<int64_t>(ceil_div(uint64_t(n->shape.m), n_));
    n->shape.flops /= n_;
    for (WeightUse& w : n->weights) {
      w.axis = SliceAxis::outer;
      w.read_bytes /= n_;
    }
  }
  void split_columns(GraphNode* n) {
    if (!n) return;
    n->parallel = Parallel::tensor_split;
    n->shape.k = static_cast<int64_t>(ceil_div(uint64_t(n->shape.k), n_));
    n->shape.flops /= n_;
    for (WeightUse& w : n->weights) {
      w.axis = SliceAxis::columns;
      w.read_bytes /= n_;
    }
  }
  void split_heads(GraphNode& n) {
    n.parallel = Parallel::tensor_split;
    n.shape.heads /= n_;
    n.shape.flops /= n_;
  }
  // A collective over `buf` (in place): `bytes` per step is the buffer each device ends with.
  void collective(PhaseGraph& p, OpKind op, const std::string& name, int32_t layer, uint32_t t, const std::string& buf,
                  double bytes) {
    GraphNode& n = node(p, op, name, layer, t, {buf}, {buf});
    n.parallel = Parallel::collective;
    n.shape.link_bytes = bytes;
  }
  // Routed experts split by experts: device g holds [g*E/N, (g+1)*E/N) of every layer.
  // The step is as slow as the busiest device: for one token, the expected largest
  // number of the selected experts that fall on one device (uniform routing); for more
  // tokens, the mean k/N slots per token and device (many tokens even the load out).
  void split_experts(GraphNode& n, uint32_t t) {
    const ModelConfig& c = c_;
    n.parallel = Parallel::expert_split;
    const int64_t local = static_cast<int64_t>(ceil_div(c.n_expert, n_));
    const double busiest = t == 1 ? expected_busiest_experts(c.n_expert, c.n_expert_used, n_)
                                  : std::ceil(double(c.n_expert_used) / n_);
    const int64_t slots = std::max<int64_t>(1, std::llround(busiest));
    const double touched = local * (1.0 - std::pow(1.0 - double(slots) / local, t));
    n.shape.experts = local;
    n.shape.groups = slots;
    n.shape.flops = 6.0 * t * slots * c.expert_ff * c.n_embd;
    for (WeightUse& w : n.weights) {
      w.axis = SliceAxis::outer;
      w.read_bytes = static_cast<double>(w.tensor->n_bytes) * touched / c.n_expert;
    }
  }

  void weight(GraphNode& n, const TensorRef& t, double fraction = 1.0) {
    if (!t) return;
    const uint8_t file = (m_.mtp_file() && t.file == m_.mtp_file()) ? 1 : 0;
    n.weights.push_back({t.info, file, static_cast<double>(t.info->n_bytes) * fraction});
    n.shape.wtypes.push_back(t.type());
  }

  GraphNode* matmul(PhaseGraph& p, const std::string& name, int32_t layer, uint32_t t, const TensorRef& w,
                    const std::string& in, const std::string& out) {
    if (!w) return nullptr;
    GraphNode& n = node(p, OpKind::matmul, name, layer, t, {in}, {out});
    weight(n, w);
    n.shape.m = w.ne(1);
    n.shape.k = w.ne(0);
    n.shape.flops = 2.0 * t * n.shape.m * n.shape.k;
    return &n;
  }

  // Two products of the same input `in`: one node `name` with both weights when they have
  // one dtype and shape (pairs_in_one_node), else a node per weight named `name_a` and
  // `name_b`. `split` (multi-GPU shared_split) splits the rows of every weight.
  void matmul_pair(PhaseGraph& p, const std::string& name, const std::string& name_a, const std::string& name_b,
                   int32_t layer, uint32_t t, const TensorRef& a, const TensorRef& b, const std::string& in,
                   const std::string& out_a, const std::string& out_b, bool split = false) {
    if (!a || !b || !pairs_in_one_node(a.type(), a.ne(0), a.ne(1), b.type(), b.ne(0), b.ne(1))) {
      // matmul() returns a pointer into p.nodes: split it before the next node moves it.
      if (GraphNode* n = matmul(p, name_a, layer, t, a, in, out_a); split) split_rows(n);
      if (GraphNode* n = matmul(p, name_b, layer, t, b, in, out_b); split) split_rows(n);
      return;
    }
    GraphNode& n = node(p, OpKind::matmul, name, layer, t, {in}, {out_a, out_b});
    weight(n, a);
    weight(n, b);
    n.shape.m = a.ne(1);
    n.shape.k = a.ne(0);
    n.shape.flops = 2 * 2.0 * t * n.shape.m * n.shape.k;
    if (split) split_rows(&n);
  }

  void norm(PhaseGraph& p, const std::string& name, int32_t layer, uint32_t t, const TensorRef& w,
            const std::string& in, const std::string& out) {
    GraphNode& n = node(p, OpKind::rms_norm, name, layer, t, {in}, {out});
    weight(n, w);
    n.shape.m = n.shape.k = w ? w.ne(0) : 0;
    n.shape.flops = 4.0 * t * n.shape.k;
  }

  // Visible rows at the cost context (MODEL.md §5.10): raw window plus compressed rows,
  // top-k limited on CSA layers.
  int64_t visible_raw(uint64_t ctx) const { return static_cast<int64_t>(std::min<uint64_t>(ctx, c_.sliding_window)); }
  int64_t visible_compressed(uint32_t ratio, uint64_t ctx) const {
    if (ratio == 0) return 0;
    const int64_t n = static_cast<int64_t>(ctx / ratio);
    return ratio == kCsaRatio ? std::min<int64_t>(n, c_.indexer_top_k) : n;
  }

  // ---- one decoder layer (MODEL.md §5.2-§5.13) --------------------------------

  void layer(PhaseGraph& p, uint32_t l, uint32_t t) {
    const ModelConfig& c = c_;
    const bool is_mtp = l == c.n_layer;
    const LayerTensors& L = is_mtp ? m_.mtp().layer : m_.layer(l);
    const uint32_t ratio = is_mtp ? 0 : c.compress_ratios[l];
    const bool csa = ratio == kCsaRatio;
    const std::string P = is_mtp ? std::string("mtp.") : str("blk.", l, ".");
    const std::string X = is_mtp ? "mtp_hc" : "hc";
    const auto li = static_cast<int32_t>(l);

    auto hc_pre = [&](const char* name, const TensorRef& fn, const TensorRef& scale, const TensorRef& base) {
      GraphNode& n = node(p, OpKind::hc_pre, P + name, li, t, {X}, {"x_in", "hc_post", "hc_comb"});
      weight(n, fn);
      weight(n, scale);
      weight(n, base);
      n.shape.m = c.hc_mix();
      n.shape.k = c.hc_dim();
      n.shape.flops = t * (2.0 * c.hc_mix() * c.hc_dim() + 4.0 * c.hc_dim() + 40.0 * c.hc_sinkhorn_iters * c.hc_count);
    };
    auto hc_post = [&](const char* name, const std::string& a) {
      GraphNode& n = node(p, OpKind::hc_post, P + name, li, t, {a, X, "hc_post", "hc_comb"}, {X});
      n.shape.m = n.shape.k = c.hc_dim();
      n.shape.flops = 2.0 * t * c.hc_dim() * (c.hc_count + 1);
    };

    // Attention sub-layer.
    hc_pre("hc_attn_pre", L.hc_attn_fn, L.hc_attn_scale, L.hc_attn_base);
    norm(p, P + "attn_norm", li, t, L.attn_norm, "x_in", "h");
    matmul(p, P + "attn_q_a", li, t, L.attn_q_a, "h", "qa");
    norm(p, P + "attn_q_a_norm", li, t, L.attn_q_a_norm, "qa", "qr");
    const bool attn_split = n_ > 1 && o_.par.attention_split;
    GraphNode* q_b = matmul(p, P + "attn_q_b", li, t, L.attn_q_b, "qr", "q");
    if (attn_split) split_rows(q_b);
    {
      GraphNode& n = node(p, OpKind::q_head_norm_rope, P + "q_head_norm_rope", li, t, {"q"}, {"q"});
      n.shape.heads = c.n_head;
      n.shape.head_dim = c.head_dim;
      n.shape.flops = 6.0 * t * c.q_dim();
      if (attn_split) split_heads(n);
    }
    matmul(p, P + "attn_kv", li, t, L.attn_kv, "h", "kv");
    norm(p, P + "attn_kv_a_norm", li, t, L.attn_kv_a_norm, "kv", "kv");
    {
      GraphNode& n = node(p, OpKind::kv_rope_store, P + "kv_rope_store", li, t, {"kv"}, {"kv", P + "kv_raw"});
      n.shape.heads = 1;
      n.shape.head_dim = c.head_dim;
      n.shape.act_bytes += static_cast<double>(t) * c.head_dim * kvb_;
      n.shape.flops = 10.0 * t * c.head_dim;
    }
    if (ratio > 0) {
      matmul_pair(p, P + "attn_compressor_kv_gate", P + "attn_compressor_kv", P + "attn_compressor_gate", li, t,
                  L.attn_compressor_kv, L.attn_compressor_gate, "h", "ckv", "cgate");
      compressor(p, P + "attn_compressor", li, t, ratio, c.head_dim, L.attn_compressor_ape, L.attn_compressor_norm,
                 {"ckv", "cgate"}, {P + "kv_compressed", P + "compressor_state"});
    }
    if (csa) {
      matmul_pair(p, P + "indexer_compressor_kv_gate", P + "indexer_compressor_kv", P + "indexer_compressor_gate", li,
                  t, L.indexer_compressor_kv, L.indexer_compressor_gate, "h", "ickv", "icgate");
      compressor(p, P + "indexer_compressor", li, t, ratio, c.indexer_head_dim, L.indexer_compressor_ape,
                 L.indexer_compressor_norm, {"ickv", "icgate"}, {P + "index_keys", P + "indexer_compressor_state"});
      matmul(p, P + "indexer_q_b", li, t, L.indexer_attn_q_b, "qr", "iq");
      matmul(p, P + "indexer_proj", li, t, L.indexer_proj, "h", "iw");
      GraphNode& n = node(p, OpKind::indexer_topk, P + "indexer_topk", li, t, {"iq", "iw", P + "index_keys"}, {"topk"});
      const int64_t rows = static_cast<int64_t>(o_.cost_context / ratio);
      n.shape.heads = c.indexer_heads;
      n.shape.head_dim = c.indexer_head_dim;
      n.shape.rows = rows;
      n.max_rows = static_cast<int64_t>(o_.max_context / ratio);
      n.shape.act_bytes += static_cast<double>(rows) * c.indexer_head_dim * 4.0;  // f32 keys
      n.shape.flops = 2.0 * t * c.indexer_heads * rows * c.indexer_head_dim + 2.0 * t * rows;
    }
    {
      std::vector<std::string> in = {"q", "kv", P + "kv_raw"};
      if (ratio > 0) in.push_back(P + "kv_compressed");
      if (csa) in.push_back("topk");
      GraphNode& n = node(p, OpKind::attention, P + "attention", li, t, {}, {"o"});
      for (const auto& b : in) {
        n.inputs.push_back(id(b));
        auto it = per_token_bytes_.find(b);
        if (it != per_token_bytes_.end()) n.shape.act_bytes += static_cast<double>(it->second) * t;
      }
      weight(n, L.attn_sinks);
      const int64_t rows = visible_raw(o_.cost_context) + visible_compressed(ratio, o_.cost_context);
      n.shape.heads = c.n_head;
      n.shape.head_dim = c.head_dim;
      n.shape.rows = rows;
      n.shape.kv_elem_bytes = kvb_;
      n.max_rows = visible_raw(o_.max_context) + visible_compressed(ratio, o_.max_context);
      n.shape.act_bytes += static_cast<double>(rows) * c.head_dim * kvb_;
      n.shape.flops = 4.0 * t * c.n_head * rows * c.head_dim;
      if (attn_split) split_heads(n);  // every device reads the whole (shared) KV rows
    }
    {
      GraphNode& n = node(p, OpKind::out_inv_rope, P + "out_inv_rope", li, t, {"o"}, {"o"});
      n.shape.heads = c.n_head;
      n.shape.head_dim = c.head_dim;
      n.shape.flops = 6.0 * t * c.n_head * c.rope_dim;
      if (attn_split) split_heads(n);
    }
    if (L.attn_output_a) {
      GraphNode& n = node(p, OpKind::grouped_matmul, P + "attn_output_a", li, t, {"o"}, {"low"});
      weight(n, L.attn_output_a);
      n.shape.groups = c.o_groups;
      n.shape.m = c.o_lora_rank;
      n.shape.k = c.o_group_in();
      n.shape.flops = 2.0 * t * c.o_groups * c.o_lora_rank * c.o_group_in();
      if (attn_split) {  // whole groups per device: the outer dim of the grouped weight
        n.parallel = Parallel::tensor_split;
        n.shape.groups /= n_;
        n.shape.flops /= n_;
        for (WeightUse& w : n.weights) {
          w.axis = SliceAxis::outer;
          w.read_bytes /= n_;
        }
      }
    }
    GraphNode* o_b = matmul(p, P + "attn_output_b", li, t, L.attn_output_b, "low", "a");
    if (attn_split && o_b) {
      split_columns(o_b);  // partial sums of the output projection, summed over the devices
      collective(p, OpKind::all_reduce, P + "attn_all_reduce", li, t, "a", 4.0 * t * c.n_embd);
    }
    hc_post("hc_attn_post", "a");

    // FFN sub-layer.
    hc_pre("hc_ffn_pre", L.hc_ffn_fn, L.hc_ffn_scale, L.hc_ffn_base);
    norm(p, P + "ffn_norm", li, t, L.ffn_norm, "x_in", "u");
    matmul(p, P + "ffn_gate_inp", li, t, L.ffn_gate_inp, "u", "router_logits");
    {
      const bool hash = !is_mtp && c.hash_routed(l);
      GraphNode& n = hash ? node(p, OpKind::router, P + "ffn_router", li, t, {"router_logits", "tokens"},
                                 {"expert_ids", "expert_w"})
                          : node(p, OpKind::router, P + "ffn_router", li, t, {"router_logits"}, {"expert_ids", "expert_w"});
      if (hash) {
        // One tid2eid row per token of the step.
        const double rows = static_cast<double>(L.ffn_gate_tid2eid ? L.ffn_gate_tid2eid.ne(1) : 1);
        weight(n, L.ffn_gate_tid2eid, std::min(1.0, t / rows));
      } else {
        weight(n, L.exp_probs_b);
      }
      n.shape.m = c.n_expert;
      n.shape.groups = c.n_expert_used;
      n.shape.flops = 10.0 * t * c.n_expert;
    }
    {
      GraphNode& n = node(p, OpKind::moe, P + "ffn_moe", li, t, {"u", "expert_ids", "expert_w"},
                          {n_ > 1 ? "moe_slots" : "moe_out"});
      const double e = c.n_expert;
      const double touched = e * (1.0 - std::pow(1.0 - c.n_expert_used / e, t));
      weight(n, L.ffn_gate_exps, touched / e);
      weight(n, L.ffn_up_exps, touched / e);
      weight(n, L.ffn_down_exps, touched / e);
      n.shape.m = c.expert_ff;
      n.shape.k = c.n_embd;
      n.shape.groups = c.n_expert_used;
      n.shape.experts = c.n_expert;
      n.shape.flops = 6.0 * t * c.n_expert_used * c.expert_ff * c.n_embd;
      if (n_ > 1) split_experts(n, t);
    }
    // Multi-GPU: each device writes the outputs of the slots whose expert it holds and
    // zeros in the others; one all-reduce per layer gives every device every slot's
    // output, and the combine then sums them in slot order as one GPU does. Exact: every
    // element has one non-zero contributor, and x + 0 = x, so the sum is bit-identical
    // to one GPU's whatever order NCCL adds in (an all-reduce of per-device partial sums
    // of the weighted outputs would not be). Every device holds the token's
    // activations, so expert parallelism needs no dispatch: routing runs on every device
    // and each skips the experts it lacks (an all-to-all would only pay if tokens were
    // spread over the devices).
    if (n_ > 1) {
      collective(p, OpKind::all_reduce, P + "ffn_moe_all_reduce", li, t, "moe_slots",
                 4.0 * t * c.n_expert_used * c.n_embd);
      GraphNode& n = node(p, OpKind::moe_combine, P + "ffn_moe_combine", li, t, {"moe_slots", "expert_w"}, {"moe_out"});
      n.shape.m = c.n_embd;
      n.shape.groups = c.n_expert_used;
      n.shape.flops = 2.0 * t * c.n_expert_used * c.n_embd;
    }
    const bool shared = c.n_expert_shared > 0 && L.ffn_gate_shexp;
    const bool shared_split = n_ > 1 && o_.par.shared_split && shared;
    std::string ffn_out = "moe_out";
    if (shared) {
      // Gate and up: one node when they share dtype and shape; shared_split splits the
      // rows of both weights (each device computes its slice of both, as of one).
      matmul_pair(p, P + "ffn_gate_up_shexp", P + "ffn_gate_shexp", P + "ffn_up_shexp", li, t, L.ffn_gate_shexp,
                  L.ffn_up_shexp, "u", "sh_gate", "sh_up", shared_split);
      GraphNode& s = node(p, OpKind::swiglu, P + "ffn_swiglu_shexp", li, t, {"sh_gate", "sh_up"}, {"sh_mid"});
      s.shape.m = s.shape.k = c.shexp_ff();
      s.shape.flops = 8.0 * t * c.shexp_ff();
      if (shared_split) {
        s.parallel = Parallel::tensor_split;
        s.shape.m = s.shape.k = c.shexp_ff() / n_;
        s.shape.flops /= n_;
      }
      GraphNode* down = matmul(p, P + "ffn_down_shexp", li, t, L.ffn_down_shexp, "sh_mid", "sh_out");
      if (shared_split) {
        split_columns(down);  // partial sums of the down projection, summed over the devices
        collective(p, OpKind::all_reduce, P + "ffn_shexp_all_reduce", li, t, "sh_out", 4.0 * t * c.n_embd);
      }
      GraphNode& a = node(p, OpKind::add, P + "ffn_add", li, t, {"moe_out", "sh_out"}, {"f"});
      a.shape.m = a.shape.k = c.n_embd;
      a.shape.flops = 1.0 * t * c.n_embd;
      ffn_out = "f";
    }
    hc_post("hc_ffn_post", ffn_out);
  }

  void compressor(PhaseGraph& p, const std::string& name, int32_t l, uint32_t t, uint32_t ratio, uint32_t d,
                  const TensorRef& ape, const TensorRef& nw, std::initializer_list<std::string> in,
                  std::initializer_list<std::string> out) {
    GraphNode& n = node(p, OpKind::compressor, name, l, t, in, out);
    weight(n, ape);
    weight(n, nw);
    const double width = overlap(ratio) * d;
    n.shape.m = d;
    n.shape.k = static_cast<int64_t>(width);
    n.shape.groups = ratio;
    // State read + write per step, emitted rows (one per `ratio` tokens, at least one).
    n.shape.act_bytes += 2.0 * compressor_state_bytes(ratio, d) + std::ceil(double(t) / ratio) * d * kvb_;
    n.shape.flops = 12.0 * t * width;
  }

  // ---- whole passes --------------------------------------------------------------

  // Embedding, every trunk layer, then the head on the last `head` tokens.
  void trunk(PhaseGraph& p, uint32_t t, uint32_t head, OpKind pick) {
    const GlobalTensors& G = m_.globals();
    {
      GraphNode& n = node(p, OpKind::embed, "token_embd", -1, t, {"tokens"}, {"hc"});
      const double rows = static_cast<double>(G.token_embd.ne(1));
      weight(n, G.token_embd, std::min(1.0, t / rows));
      n.shape.m = c_.n_embd;
      n.shape.flops = 1.0 * t * c_.hc_dim();
    }
    for (uint32_t l = 0; l < c_.n_layer; ++l) layer(p, l, t);
    head_nodes(p, "", head, G.output_hc_fn, G.output_hc_scale, G.output_hc_base, G.output_norm, G.output, "hc", pick);
  }

  void head_nodes(PhaseGraph& p, const std::string& prefix, uint32_t t, const TensorRef& fn, const TensorRef& scale,
                  const TensorRef& base, const TensorRef& nw, const TensorRef& out_w, const std::string& X, OpKind pick) {
    const int32_t layer = prefix.empty() ? -1 : static_cast<int32_t>(c_.n_layer);
    {
      GraphNode& n = node(p, OpKind::output_hc_head, prefix.empty() ? "output_hc_head" : prefix + "hc_head", layer, t,
                          {X}, {"z"});
      weight(n, fn);
      weight(n, scale);
      weight(n, base);
      n.shape.m = c_.hc_count;
      n.shape.k = c_.hc_dim();
      n.shape.flops = t * (2.0 * c_.hc_count * c_.hc_dim() + 4.0 * c_.hc_dim());
    }
    norm(p, prefix.empty() ? "output_norm" : prefix + "norm", layer, t, nw, "z", "zn");
    GraphNode* head = matmul(p, prefix.empty() ? "output" : prefix + "head", layer, t, out_w, "zn", "logits");
    if (n_ > 1 && o_.par.head_split && head) {
      split_rows(head);  // a slice of the vocabulary per device
      collective(p, OpKind::all_gather, prefix.empty() ? "output_all_gather" : prefix + "head_all_gather", layer, t,
                 "logits", 4.0 * t * c_.n_vocab);
    }
    GraphNode& n = node(p, pick, prefix + op_kind_name(pick), layer, t, {"logits"}, {"next_token"});
    n.shape.m = c_.n_vocab;
    n.shape.flops = 4.0 * t * c_.n_vocab;
  }

  // MTP draft (MODEL.md §7): input projections from the sampled token and the trunk's
  // final HC state, one SWA-only top-k layer, the MTP head.
  void mtp_draft(PhaseGraph& p) {
    const MtpTensors& M = m_.mtp();
    const auto layer = static_cast<int32_t>(c_.n_layer);
    {
      GraphNode& n = node(p, OpKind::mtp_embed_proj, "mtp.embed_proj", layer, 1, {"next_token", "hc"}, {"mtp_hc"});
      const double rows = static_cast<double>(M.embed.ne(1));
      weight(n, M.embed, 1.0 / rows);
      weight(n, M.enorm);
      weight(n, M.hnorm);
      if (M.eh_proj) {
        weight(n, M.eh_proj);
      } else {
        weight(n, M.e_proj);
        weight(n, M.h_proj);
      }
      n.shape.m = c_.n_embd;
      n.shape.k = c_.n_embd;
      n.shape.groups = c_.hc_count + 1;
      n.shape.flops = 2.0 * c_.n_embd * c_.n_embd * (c_.hc_count + 1);
    }
    layer_mtp(p);
    head_nodes(p, "mtp.", 1, M.hc_head_fn, M.hc_head_scale, M.hc_head_base, M.norm, M.head, "mtp_hc", OpKind::argmax);
  }
  void layer_mtp(PhaseGraph& p) { layer(p, c_.n_layer, 1); }

  const Model& m_;
  const ModelConfig& c_;
  const GraphOptions& o_;
  int64_t kvb_ = 4;
  uint32_t n_ = 1;  // devices
  uint32_t max_tokens_ = 1, head_tokens_ = 1;
  OpGraph g_;
  std::map<std::string, uint32_t> ids_;
  std::map<std::string, uint64_t> per_token_bytes_;
};

}  // namespace

OpGraph build_op_graph(const Model& model, const GraphOptions& opts) {
  if (opts.max_context == 0) fail("op graph: max context is 0; expected at least 1 token");
  if (opts.prefill_buckets.empty()) fail("op graph: no prefill buckets; expected at least one");
  for (size_t i = 1; i < opts.prefill_buckets.size(); ++i)
    if (opts.prefill_buckets[i] <= opts.prefill_buckets[i - 1])
      fail("op graph: prefill buckets ", opts.prefill_buckets[i - 1], ", ", opts.prefill_buckets[i],
           " are not ascending; expected increasing upper bounds such as 16,128,512,2048");
  return Builder(model, opts).build();
}

}  // namespace fp
