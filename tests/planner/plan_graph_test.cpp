// The op graph: phases per model, nodes per layer kind (MODEL.md §5: SWA, HCA with one
// compressor, CSA with two compressors and the indexer), hash vs top-k routing, the MTP
// block, every tensor read by some node, and KV sizes against MODEL.md §8.
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
  // 25 nodes per SWA layer, +3 for HCA (compressor kv/gate/pool), +9 more for CSA
  // (indexer compressor kv/gate/pool, indexer q_b, proj, top-k); embed + 4 head nodes.
  const size_t expect = 25 * c.count(LayerKind::SWA) + 28 * c.count(LayerKind::HCA) + 34 * c.count(LayerKind::CSA) + 5;
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
  CHECK(f16 == L * 6880);

  CHECK(test::error_of([&] {
          GraphOptions o = opts();
          o.prefill_buckets = {128, 16};
          build_op_graph(m, o);
        }).find("not ascending") != std::string::npos);
}
