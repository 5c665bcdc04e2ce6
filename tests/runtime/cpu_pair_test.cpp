// The CPU executor runs a paired matmul node (two weights of one dtype and shape reading
// one input, planner/graph/op_graph.h pairs_in_one_node) as one product per weight: after
// every trunk matmul node of a step, output i holds weight i's product of the node's
// input, bit for bit what a lone ref::matmul writes. Checked on the built-in tiny model
// (shared expert and every compressor paired) and on a synth model whose shared expert
// and attention compressor mix dtypes (two nodes each, as before pairs). That the model's
// tokens and logits are unchanged is the oracle and greedy tests' job.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "planner/model/builtin.h"
#include "planner/model/synth.h"
#include "runtime/cpu/engine.h"
#include "tests/planner/model_test_util.h"

using namespace fp;

namespace {

struct Counts {
  int pairs = 0, singles = 0;
  std::vector<std::string> names;  // of the paired nodes, in step order
};

// Runs one 5-token step of the model at `path` and checks every trunk matmul node's
// outputs against ref::matmul of its weights, one by one.
Counts check_products(const std::string& path) {
  cpu::CpuOptions o;
  o.max_context = 256;
  o.max_step = 16;
  auto e = cpu::CpuEngine::open(path, o);
  auto s = e->new_session();
  auto& ex = dynamic_cast<cpu::CpuSession&>(*s).executor();
  const auto& bufs = e->graph().buffers;
  const int64_t n = 5;
  Counts c;
  ex.node_hook = [&](const GraphNode& g, cpu::Executor& x) {
    if (g.op != OpKind::matmul || g.layer < 0) return;  // the head runs on the logit rows only
    CAPTURE(g.name);
    REQUIRE(g.inputs.size() == 1);
    REQUIRE(g.outputs.size() == g.weights.size());
    float* in = x.buffer(bufs.at(g.inputs[0]).name).data();
    for (size_t i = 0; i < g.weights.size(); ++i) {
      const ref::Weight& w = e->weights().by_name.at(g.weights[i].tensor->name);
      std::vector<float> want(size_t(n * w.rows));
      ref::matmul(w, in, w.cols, n, want.data(), w.rows);
      const float* got = x.buffer(bufs.at(g.outputs[i]).name).data();
      CHECK_MESSAGE(std::memcmp(got, want.data(), want.size() * sizeof(float)) == 0, w.name);
    }
    if (g.weights.size() == 2) {
      ++c.pairs;
      c.names.push_back(g.name);
    } else {
      ++c.singles;
    }
  };
  const std::vector<int32_t> ids = {1, 17, 42, 99, 250};
  s->append(ids);
  return c;
}

}  // namespace

TEST_CASE("cpu: a paired matmul node writes each weight's product, bit for bit a lone matmul's") {
  const Counts c = check_products(builtin_model_path());
  // 6 layers (SWA, SWA, CSA, HCA, CSA, HCA): 6 shared experts, 4 attention compressors,
  // 2 indexer compressors.
  CHECK(c.pairs == 12);
  CHECK(c.singles > 0);
  CHECK(c.names.front() == "blk.0.ffn_gate_up_shexp");
  CHECK(std::count(c.names.begin(), c.names.end(), "blk.2.indexer_compressor_kv_gate") == 1);
  CHECK(std::count(c.names.begin(), c.names.end(), "blk.3.attn_compressor_kv_gate") == 1);
}

TEST_CASE("cpu: products of mixed dtypes run as two nodes, each its weight's product") {
  SynthConfig s = synth_preset("tiny");
  s.dtypes.apply("ffn_up_shexp=F16");          // gate stays Q8_0
  s.dtypes.apply("attn_compressor_gate=Q8_0");  // kv stays F16
  const Counts c = check_products(test::synth_file("cpu_mixed_pairs", s));
  CHECK(c.pairs == 2);  // only the indexer compressors (F16 kv and gate) pair
  for (const auto& name : c.names) CHECK(name.find("indexer_compressor_kv_gate") != std::string::npos);
}
