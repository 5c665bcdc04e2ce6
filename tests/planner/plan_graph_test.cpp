// The op graph: phases per model, nodes per layer kind (MODEL.md §5: SWA, HCA with one
// compressor, CSA with two compressors and the indexer), hash vs top-k routing, the MTP
// block, every tensor read by some node, KV sizes against MODEL.md §8, and paired
// products (two weights of one dtype and shape on one input: one node; else two).
#include <doctest/doctest.h>

#include <map>
#include <set>

#include "plan_test_util.h"
#include "planner/graph/op_graph.h"

using namespace fp;

namespace {

GraphOptions opts(uint64_t ctx = 4096) {
  GraphOptions o;
  o.max_context = ctx;
  o.cost_context = std::min<uint64_t>(ctx, 4096);
  return o;
}

const PhaseGraph& phase(const OpGraph& g, const std::string& name) {
  for (const auto& p : g.phases)
    if (p.name == name) return p;
  FAIL("no phase " << name);
  throw 0;
}

}  // namespace

TEST_CASE("graph: full DS4 Flash header — phases and node counts per layer kind") {
  const Model& m = test::full_model();
  const OpGraph g = build_op_graph(m, opts());
  std::vector<std::string> names;
  for (const auto& p : g.phases) names.push_back(p.name);
  CHECK(names == std::vector<std::string>{"prefill.1-16", "prefill.17-128", "prefill.129-512", "prefill.513-2048", "decode"});

  const ModelConfig& c = m.config();
  // 24 nodes per SWA layer (the shared expert's gate and up one paired node), +2 for HCA
  // (compressor kv+gate pair, pool), +5 more for CSA (indexer compressor kv+gate pair,
  // pool, indexer q_b, proj, top-k); embed + 4 head nodes.
  const size_t expect = 24 * c.count(LayerKind::SWA) + 26 * c.count(LayerKind::HCA) + 31 * c.count(LayerKind::CSA) + 5;
  for (const auto& p : g.phases) CHECK(p.nodes.size() == expect);

  const PhaseGraph& d = phase(g, "decode");
  std::map<int, std::vector<std::string>> by_layer;
  for (const auto& n : d.nodes) by_layer[n.layer].push_back(n.name);
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    const auto& v = by_layer[int(l)];
    CAPTURE(l);
    REQUIRE(!v.empty());
    CHECK(v.front() == str("blk.", l, ".hc_attn_pre"));
    CHECK(v.back() == str("blk.", l, ".hc_ffn_post"));
    const auto has = [&](const std::string& role) {
      return std::find(v.begin(), v.end(), str("blk.", l, ".", role)) != v.end();
    };
    CHECK(has("indexer_topk") == (c.layer_kind(l) == LayerKind::CSA));
    CHECK(has("attn_compressor") == (c.layer_kind(l) != LayerKind::SWA));
  }
  CHECK(d.nodes.front().op == OpKind::embed);
  CHECK(d.nodes.back().op == OpKind::sample);
  for (const auto& n : phase(g, "prefill.513-2048").nodes)
    CHECK(n.shape.tokens == (n.layer < 0 && n.op != OpKind::embed ? 1u : 2048u));
}

TEST_CASE("graph: hash layers route by token id, the rest by biased top-k") {
  const Model& m = test::full_model();
  const OpGraph g = build_op_graph(m, opts());
  uint32_t tokens_buf = UINT32_MAX;
  for (size_t i = 0; i < g.buffers.size(); ++i)
    if (g.buffers[i].name == "tokens") tokens_buf = uint32_t(i);
  for (const auto& n : phase(g, "decode").nodes) {
    if (n.op != OpKind::router) continue;
    const bool hash = m.config().hash_routed(uint32_t(n.layer));
    CAPTURE(n.name);
    CHECK((std::find(n.inputs.begin(), n.inputs.end(), tokens_buf) != n.inputs.end()) == hash);
    REQUIRE(n.weights.size() == 1);
    CHECK(n.weights[0].tensor->name == str("blk.", n.layer, hash ? ".ffn_gate_tid2eid.weight" : ".exp_probs_b.bias"));
  }
}

TEST_CASE("graph: tiny preset — every op of the vocabulary, MTP phases, every tensor read") {
  const Model& m = test::tiny_model();
  REQUIRE(m.mtp_available());
  const OpGraph g = build_op_graph(m, opts(1024));
  std::set<std::string> names;
  for (const auto& p : g.phases) names.insert(p.name);
  CHECK(names.count("mtp_draft"));
  CHECK(names.count("mtp_verify"));

  std::set<OpKind> ops;
  std::set<const gguf::TensorInfo*> read;
  for (const auto& p : g.phases)
    for (const auto& n : p.nodes) {
      ops.insert(n.op);
      for (const auto& w : n.weights) read.insert(w.tensor);
      for (uint32_t b : n.inputs) CHECK(b < g.buffers.size());
      for (uint32_t b : n.outputs) CHECK(b < g.buffers.size());
    }
  CHECK(ops.size() == size_t(kOpKindCount) - 3);  // every op but the collectives and moe_combine (multi-GPU plans only)
  CHECK(!ops.count(OpKind::all_reduce));
  CHECK(!ops.count(OpKind::all_gather));
  for (const auto& t : m.file().tensors()) CHECK_MESSAGE(read.count(&t), t.name);

  const PhaseGraph& draft = phase(g, "mtp_draft");
  CHECK(draft.nodes.front().op == OpKind::mtp_embed_proj);
  CHECK(draft.nodes.back().op == OpKind::argmax);
  for (const auto& n : draft.nodes) {
    CHECK(n.shape.tokens == 1u);
    CHECK(n.op != OpKind::compressor);  // the MTP block is SWA-only
    CHECK(n.op != OpKind::indexer_topk);
  }
  const PhaseGraph& verify = phase(g, "mtp_verify");
  CHECK(verify.max_tokens == 2u);  // depth 1 + 1
  CHECK(verify.nodes.back().op == OpKind::argmax);
  CHECK(verify.nodes.back().shape.tokens == 2u);  // logits for every verified token
}

TEST_CASE("graph: every tensor of the full model is read; KV sizes match MODEL.md §8") {
  const Model& m = test::full_model();
  const OpGraph g = build_op_graph(m, opts());
  std::set<const gguf::TensorInfo*> read;
  for (const auto& p : g.phases)
    for (const auto& n : p.nodes)
      for (const auto& w : n.weights) read.insert(w.tensor);
  CHECK(read.size() == m.file().tensors().size());

  const ModelConfig& c = m.config();
  const uint64_t L = 1048576;
  uint64_t rows = 0, raw = 0, state = 0;
  for (const auto& k : kv_sizes(c, false, L, DType::F32)) {
    rows += k.compressed_bytes + k.index_bytes;
    raw += k.raw_bytes;
    state += k.state_bytes;
  }
  CHECK(rows == L * 13760);                       // 3440 values per token, F32
  CHECK(raw == uint64_t(43) * 128 * 512 * 4);     // 10.75 MiB of raw rings
  CHECK(state == 12206080);                       // 11.64 MiB of compressor state
  uint64_t f16 = 0;
  for (const auto& k : kv_sizes(c, false, L, DType::F16)) f16 += k.compressed_bytes + k.index_bytes;
  CHECK(f16 == L * 8224);  // 2768 attention values at 2 bytes, the indexer's 672 keys still F32

  CHECK(test::error_of([&] {
          GraphOptions o = opts();
          o.prefill_buckets = {128, 16};
          build_op_graph(m, o);
        }).find("not ascending") != std::string::npos);
}

namespace {

// The node of `p` named `name`, or nullptr.
const GraphNode* find_node(const PhaseGraph& p, const std::string& name) {
  for (const auto& n : p.nodes)
    if (n.name == name) return &n;
  return nullptr;
}

uint32_t buffer_id(const OpGraph& g, const std::string& name) {
  for (size_t i = 0; i < g.buffers.size(); ++i)
    if (g.buffers[i].name == name) return uint32_t(i);
  FAIL("no buffer " << name);
  return 0;
}

// `name` in `p` is one matmul node reading `in` with weights `a`, `b` (in that order)
// into `out_a`, `out_b`, shaped as one weight's rows and both weights' flops.
void check_pair(const OpGraph& g, const PhaseGraph& p, const std::string& name, const TensorRef& a, const TensorRef& b,
                const std::string& in, const std::string& out_a, const std::string& out_b) {
  CAPTURE(p.name);
  CAPTURE(name);
  const GraphNode* n = find_node(p, name);
  REQUIRE(n != nullptr);
  CHECK(n->op == OpKind::matmul);
  REQUIRE(n->weights.size() == 2);
  CHECK(n->weights[0].tensor == a.info);
  CHECK(n->weights[1].tensor == b.info);
  CHECK(n->inputs == std::vector<uint32_t>{buffer_id(g, in)});
  CHECK(n->outputs == std::vector<uint32_t>{buffer_id(g, out_a), buffer_id(g, out_b)});
  CHECK(n->shape.m == a.ne(1));
  CHECK(n->shape.k == a.ne(0));
  CHECK(n->shape.wtypes == std::vector<DType>{a.type(), b.type()});
  CHECK(n->shape.flops == doctest::Approx(2 * 2.0 * n->shape.tokens * a.ne(1) * a.ne(0)));
  CHECK(n->weights[0].read_bytes + n->weights[1].read_bytes == double(a.info->n_bytes + b.info->n_bytes));
}

}  // namespace

TEST_CASE("graph: paired products — shared expert gate+up and each compressor's kv+gate are one node") {
  const Model& m = test::full_model();
  const ModelConfig& c = m.config();
  const OpGraph g = build_op_graph(m, opts());
  REQUIRE(g.phases.size() == 5);  // four prefill buckets and decode: every one pairs
  for (const PhaseGraph& p : g.phases) {
    for (uint32_t l = 0; l < c.n_layer; ++l) {
      CAPTURE(l);
      const LayerTensors& L = m.layer(l);
      const std::string P = str("blk.", l, ".");
      check_pair(g, p, P + "ffn_gate_up_shexp", L.ffn_gate_shexp, L.ffn_up_shexp, "u", "sh_gate", "sh_up");
      CHECK(find_node(p, P + "ffn_gate_shexp") == nullptr);
      CHECK(find_node(p, P + "ffn_up_shexp") == nullptr);
      if (c.layer_kind(l) != LayerKind::SWA)
        check_pair(g, p, P + "attn_compressor_kv_gate", L.attn_compressor_kv, L.attn_compressor_gate, "h", "ckv",
                   "cgate");
      CHECK(find_node(p, P + "attn_compressor_kv") == nullptr);
      CHECK(find_node(p, P + "attn_compressor_gate") == nullptr);
      if (c.layer_kind(l) == LayerKind::CSA)
        check_pair(g, p, P + "indexer_compressor_kv_gate", L.indexer_compressor_kv, L.indexer_compressor_gate, "h",
                   "ickv", "icgate");
      CHECK(find_node(p, P + "indexer_compressor_kv") == nullptr);
    }
  }
  // The Q8_0 shared expert pair in decode: its key names both weights; the cost model
  // prices one matvec launch over both (more than one weight's, less than two launches)
  // and, on the GEMM path, two GEMMs (twice one weight's).
  const PhaseGraph& d = phase(g, "decode");
  const GraphNode& pair = *find_node(d, "blk.3.ffn_gate_up_shexp");
  CHECK(pair.shape.key() == "matmul t=1 m=2048 k=4096 w=Q8_0/Q8_0");
  const DeviceRates r = test::shipped_profile("h100-sxm-80gb").rates();
  const KernelInfo* mv = find_kernel("cuda.matvec.q8_0");
  const KernelInfo* gemm = find_kernel("cuda.gemm.dequant_cublas_f16");
  for (uint32_t t : {1u, 512u}) {
    CAPTURE(t);
    KernelShape two = pair.shape;
    two.tokens = t;
    two.weight_bytes = pair.weights[0].read_bytes + pair.weights[1].read_bytes;
    two.flops *= t;
    two.act_bytes *= t;
    KernelShape one = two;  // one weight of the pair: the input and one output, F32
    one.wtypes.resize(1);
    one.weight_bytes /= 2;
    one.flops /= 2;
    CHECK(two.act_bytes == 4.0 * t * (c.n_embd + 2 * c.shexp_ff()));
    one.act_bytes = 4.0 * t * (c.n_embd + c.shexp_ff());
    const double mv_two = mv->cost(two, r).us, mv_one = mv->cost(one, r).us;
    CHECK(mv_two > mv_one);
    CHECK(mv_two < 2 * mv_one);
    CHECK(mv->cost(two, r).launch.grid[0] == 2 * mv->cost(one, r).launch.grid[0]);
    CHECK(gemm->cost(two, r).us == doctest::Approx(2 * gemm->cost(one, r).us));
    CHECK(gemm->cost(two, r).workspace_bytes == gemm->cost(one, r).workspace_bytes);
  }
}

TEST_CASE("graph: products of another dtype stay two nodes (synth model with mixed types)") {
  // The tiny preset with the shared expert's up in F16 (gate Q8_0) and the attention
  // compressor's gate in Q8_0 (kv F16); the indexer compressor's stay F16 and pair.
  SynthConfig s = synth_preset("tiny");
  s.dtypes.apply("ffn_up_shexp=F16");
  s.dtypes.apply("attn_compressor_gate=Q8_0");
  ModelOpenOptions mo;
  mo.allow_header_only = true;
  const Model m = Model::open(test::synth_file("graph_mixed_pairs", s, true), mo);
  const ModelConfig& c = m.config();
  const OpGraph g = build_op_graph(m, opts(1024));
  for (const PhaseGraph& p : g.phases) {
    CAPTURE(p.name);
    if (p.kind == PhaseKind::mtp_draft) {  // the MTP block's shared expert: up F16 too
      CHECK(find_node(p, "mtp.ffn_gate_up_shexp") == nullptr);
      CHECK(find_node(p, "mtp.ffn_gate_shexp") != nullptr);
      CHECK(find_node(p, "mtp.ffn_up_shexp") != nullptr);
      continue;
    }
    for (uint32_t l = 0; l < c.n_layer; ++l) {
      CAPTURE(l);
      const std::string P = str("blk.", l, ".");
      CHECK(find_node(p, P + "ffn_gate_up_shexp") == nullptr);
      for (const char* role : {"ffn_gate_shexp", "ffn_up_shexp"}) {
        const GraphNode* n = find_node(p, P + role);
        REQUIRE(n != nullptr);
        CHECK(n->weights.size() == 1);
        CHECK(n->outputs.size() == 1);
      }
      if (c.layer_kind(l) != LayerKind::SWA) {
        CHECK(find_node(p, P + "attn_compressor_kv_gate") == nullptr);
        CHECK(find_node(p, P + "attn_compressor_kv") != nullptr);
        CHECK(find_node(p, P + "attn_compressor_gate") != nullptr);
      }
      if (c.layer_kind(l) == LayerKind::CSA)
        check_pair(g, p, P + "indexer_compressor_kv_gate", m.layer(l).indexer_compressor_kv,
                   m.layer(l).indexer_compressor_gate, "h", "ickv", "icgate");
    }
  }
  CHECK(pairs_in_one_node(DType::Q8_0, 4096, 2048, DType::Q8_0, 4096, 2048));
  CHECK(!pairs_in_one_node(DType::Q8_0, 4096, 2048, DType::F16, 4096, 2048));
  CHECK(!pairs_in_one_node(DType::Q8_0, 4096, 2048, DType::Q8_0, 4096, 1024));
  CHECK(!pairs_in_one_node(DType::Q8_0, 4096, 2048, DType::Q8_0, 2048, 2048));
}
