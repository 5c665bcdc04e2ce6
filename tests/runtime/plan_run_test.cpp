// Running from compiled plans on the CPU (runtime/plan/plan_binding.h, the CPU engine
// with CpuOptions::plan, and the CUDA executor's product-kernel table, which is
// CUDA-free):
//   - a plan compiled for plans/devices/cpu.yaml runs the built-in tiny model with
//     greedy tokens byte-identical to the engine without a plan (MTP on and off);
//   - the plan's node lists are compared with the op graph node by node; a graph built
//     with other options is refused with the first difference;
//   - a plan for another model, for a cuda device, or with other numerics / context is
//     refused naming both sides;
//   - the CUDA product table takes the tiny model's H200 plan, with each product's and
//     each node's overlap_prev (every node of the decode phase, every product but the
//     GEMM's; none from a --no-pdl plan), and refuses a plan
//     that names a kernel the executor lacks, naming node, phase and id;
//   - the CUDA executor's node walk is compared with the plan's node list (first
//     difference named), a split segmentation is read as split, a segment on another
//     stream is refused, and both engines refuse a plan whose nodes differ from the op
//     graph (plan_op_graph);
//   - which GPUs a cuda plan runs on (probe name, or cc + SMs + memory within 3%).
#include <doctest/doctest.h>

#include <tuple>

#include "ops/core/error.h"
#include "planner/compile/compile.h"
#include "planner/model/builtin.h"
#include "planner/profile/device_profile.h"
#include "runtime/cpu/engine.h"
#include "runtime/cuda/executor.h"
#include "runtime/plan/plan_binding.h"
#include "tests/planner/model_test_util.h"
#include "tests/support/greedy.h"

using namespace fp;
using fp::test::error_of;
using fp::test::greedy;

namespace {

DeviceProfile profile(const std::string& name) {
  return load_device_profile(std::string(FLASHPLAN_SOURCE_DIR) + "/plans/devices/" + name + ".yaml");
}

std::shared_ptr<const LoadedPlan> compile_for(const Model& m, const std::string& device, Numerics num) {
  CompileOptions o;
  o.numerics = num;
  o.model_file = "tiny.gguf";
  const auto pl = compile_plan(m, profile(device), o);
  return std::make_shared<LoadedPlan>(verify_plan(serialize_plan(*pl), device + ".fplan"));
}

const Model& builtin() {
  static const Model m = Model::open(builtin_model_path());
  return m;
}

cpu::CpuOptions options_of(const LoadedPlan& p) {
  const PlanSettings s = plan_settings(p);
  cpu::CpuOptions o;
  o.numerics = s.numerics;
  o.max_context = int64_t(s.max_context);
  o.max_step = s.max_step;
  return o;
}

}  // namespace

TEST_CASE("a cpu plan runs the built-in model with the same greedy tokens as no plan") {
  const auto plan = compile_for(builtin(), "cpu", Numerics::plain);
  const std::vector<int32_t> prompt = {0, 17, 42, 99, 3, 250, 7, 7, 31};
  cpu::CpuOptions ref_o;
  ref_o.numerics = Numerics::plain;
  auto ref = cpu::CpuEngine::open(builtin_model_path(), ref_o);
  const auto want = greedy(*ref, prompt, 24);

  cpu::CpuOptions o = options_of(*plan);
  o.plan = plan;
  auto e = cpu::CpuEngine::open(builtin_model_path(), o);
  CHECK(e->load_info().plan == "cpu.fplan");
  CHECK(greedy(*e, prompt, 24) == want);
  o.mtp_draft = int(plan_settings(*plan).mtp_depth);
  CHECK(o.mtp_draft >= 1);
  auto em = cpu::CpuEngine::open(builtin_model_path(), o);
  CHECK(greedy(*em, prompt, 24) == want);
}

TEST_CASE("the plan's node lists are checked against the op graph, first difference named") {
  const auto plan = compile_for(builtin(), "cpu", Numerics::plain);
  CHECK(first_graph_difference(*plan, build_op_graph(builtin(), plan_graph_options(*plan))) == "");
  GraphOptions other = plan_graph_options(*plan);
  other.prefill_buckets = {16, 128, 512, 1024};
  // Buffers are sized for the largest step, so the first difference is a buffer's size.
  std::string d = first_graph_difference(*plan, build_op_graph(builtin(), other));
  CHECK(d.find("bytes") != std::string::npos);
  CHECK(d.find("in the plan") != std::string::npos);
  // Same buffers, a phase less: the phase list.
  other.prefill_buckets = {128, 512, 2048};
  d = first_graph_difference(*plan, build_op_graph(builtin(), other));
  CHECK_MESSAGE(d.find("phase") != std::string::npos, d);
}

TEST_CASE("plans for another model, device, numerics or context are refused naming both") {
  const auto plan = compile_for(builtin(), "cpu", Numerics::plain);
  // Another model: the transformers oracle's tiny model.
  cpu::CpuOptions o = options_of(*plan);
  o.plan = plan;
  std::string e = error_of([&] { cpu::CpuEngine::open(test::hf_tiny_path(), o); });
  CHECK(e.find("fingerprint") != std::string::npos);
  CHECK(e.find("tiny.gguf") != std::string::npos);
  // A plan for a GPU on the CPU executor.
  const auto gpu_plan = compile_for(builtin(), "h200-141gb", Numerics::plain);
  cpu::CpuOptions g = options_of(*gpu_plan);
  g.plan = gpu_plan;
  e = error_of([&] { cpu::CpuEngine::open(builtin_model_path(), g); });
  CHECK(e.find("h200-141gb") != std::string::npos);
  CHECK(e.find("CPU reference executor") != std::string::npos);
  // Options the plan contradicts.
  cpu::CpuOptions n = o;
  n.numerics = Numerics::official;
  e = error_of([&] { cpu::CpuEngine::open(builtin_model_path(), n); });
  CHECK(e.find("numerics official asked for, the plan fixes plain") != std::string::npos);
  cpu::CpuOptions c = o;
  c.max_context = 100;
  e = error_of([&] { cpu::CpuEngine::open(builtin_model_path(), c); });
  CHECK(e.find("max context 100 asked for") != std::string::npos);
  cpu::CpuOptions s = o;
  s.max_step = o.max_step + 1;
  CHECK(error_of([&] { cpu::CpuEngine::open(builtin_model_path(), s); }).find("largest prefill bucket") !=
        std::string::npos);
}

TEST_CASE("the CUDA product table takes a GPU plan and refuses kernels it lacks") {
  const auto plan = compile_for(builtin(), "h200-141gb", Numerics::plain);
  const cuda::ProductKernels k = cuda::product_kernels(*plan);
  REQUIRE(!k.phases.empty());
  CHECK(k.phases[0].name == "decode");
  CHECK(k.for_step(1) == &k.phases[0]);
  CHECK(k.for_step(2048) != nullptr);
  CHECK(k.for_step(2049) == nullptr);
  CHECK(k.phases[0].by_weight.count("output.weight") == 1);
  // Each product and each node carries the plan's launch decision: on this 9.0 device
  // every kernel but the cuBLAS GEMM overlaps the previous one (matvecs, moe, and every
  // other op's node); compiled with --no-pdl, nothing does.
  CHECK(k.phases[0].by_weight.at("output.weight").overlap_prev);
  uint32_t moe = 0, gemm = 0;
  for (const auto& ph : k.phases)
    for (const auto& [w, c] : ph.by_weight) {
      CAPTURE(w);
      CAPTURE(ph.name);
      CHECK(c.overlap_prev == (c.kernel != cuda::ProductKernel::gemm_dequant_f16));
      moe += c.kernel == cuda::ProductKernel::moe_matvec;
      gemm += c.kernel == cuda::ProductKernel::gemm_dequant_f16;
    }
  CHECK(moe > 0);
  CHECK(gemm > 0);  // the largest prefill bucket's dense products
  for (const auto& n : k.phases[0].nodes) {
    CAPTURE(n.name);
    CHECK(n.overlap_prev);  // decode: no GEMM, no collective on one GPU
  }
  // Attention nodes carry the plan's kernel: the executor runs the tensor-core kernel
  // exactly where the plan names cuda.attention.prefill.
  uint32_t tc = 0;
  for (const auto& ph : k.phases) {
    const plan::Phase* pp = nullptr;
    for (const plan::Phase* q : *(*plan)->phases())
      if (q->name()->str() == ph.name) pp = q;
    REQUIRE(pp);
    for (uint32_t i = 0; i < ph.nodes.size(); ++i) {
      CAPTURE(ph.nodes[i].name);
      const bool named = plan->kernel_id(*pp->nodes()->Get(i)) == "cuda.attention.prefill";
      CHECK(ph.nodes[i].attention_tc == named);
      tc += named;
    }
  }
  CHECK(tc > 0);
  CompileOptions off;
  off.numerics = Numerics::plain;
  off.model_file = "tiny.gguf";
  off.pdl = false;
  const cuda::ProductKernels k_off =
      cuda::product_kernels(verify_plan(serialize_plan(*compile_plan(builtin(), profile("h200-141gb"), off)), "off.fplan"));
  for (const auto& ph : k_off.phases) {
    for (const auto& [w, c] : ph.by_weight) CHECK(!c.overlap_prev);
    for (const auto& n : ph.nodes) CHECK(!n.overlap_prev);
  }

  // The same plan naming an unimplemented kernel for blk.0.attn_q_b in every phase.
  auto t = plan->root->UnPack();
  uint16_t idx = 0;
  for (; idx < t->kernels.size(); ++idx)
    if (t->kernels[idx]->id == "cuda.gemm.int8_tc") break;
  REQUIRE(idx < t->kernels.size());
  for (auto& ph : t->phases)
    for (auto& n : ph->nodes)
      if (n->name == "blk.0.attn_q_b") {
        n->kernel = idx;
        n->overlap_prev = false;  // else verify_plan refuses it first (the GEMM cannot overlap)
      }
  const LoadedPlan bad = verify_plan(serialize_plan(*t), "bad.fplan");
  delete t;
  const std::string e = error_of([&] { cuda::product_kernels(bad); });
  CHECK(e.find("blk.0.attn_q_b") != std::string::npos);
  CHECK(e.find("cuda.gemm.int8_tc") != std::string::npos);
  CHECK(e.find("phase decode") != std::string::npos);

  // A paired node whose weights differ in dtype cannot share a launch: refused.
  t = plan->root->UnPack();
  for (auto& w : t->weights)
    if (w->name == "blk.0.ffn_up_shexp.weight") w->dtype = plan::DType::F16;
  const LoadedPlan mixed = verify_plan(serialize_plan(*t), "mixed.fplan");
  delete t;
  const std::string m = error_of([&] { cuda::product_kernels(mixed); });
  CHECK_MESSAGE(m.find("blk.0.ffn_gate_up_shexp") != std::string::npos, m);
  CHECK_MESSAGE(m.find("expected one dtype and shape") != std::string::npos, m);
}

TEST_CASE("the CUDA executor's node walk is checked against the plan's nodes and segments") {
  const auto plan = compile_for(builtin(), "h200-141gb", Numerics::plain);
  CHECK_NOTHROW(plan_op_graph(*plan, builtin()));
  const cuda::ProductKernels k = cuda::product_kernels(*plan);
  const cuda::ProductKernels::Phase& d = k.phases[0];
  REQUIRE(d.name == "decode");
  REQUIRE(d.nodes.size() == phase_for_step(*plan, 1)->nodes()->size());
  // Every CUDA kernel is capturable: each phase is one graph segment.
  for (const auto& ph : k.phases) {
    REQUIRE(ph.segments.size() == 1);
    CHECK(ph.segments[0].graph);
    CHECK(ph.segments[0].count == ph.nodes.size());
  }
  // The plan's own list walks clean, with the head and without it.
  std::string first_bad;
  for (uint32_t i = 0; i < d.nodes.size() && first_bad.empty(); ++i)
    first_bad = d.walk_difference(i, d.nodes[i].op, d.nodes[i].layer, d.nodes[i].weight, d.nodes[i].second);
  CHECK(first_bad == "");
  CHECK(d.walk_end_difference(uint32_t(d.nodes.size()), true) == "");
  REQUIRE(d.head_first < d.nodes.size());
  CHECK(d.nodes[d.head_first].op == OpKind::output_hc_head);
  CHECK(d.walk_end_difference(d.head_first, false) == "");

  // Another op, layer or weight at a node names the node and both sides.
  uint32_t kv = 0;
  while (kv < d.nodes.size() && d.nodes[kv].name != "blk.0.attn_kv") ++kv;
  REQUIRE(kv < d.nodes.size());
  std::string e = d.walk_difference(kv, OpKind::rms_norm, 0, "");
  CHECK_MESSAGE(e.find("node " + std::to_string(kv) + " (blk.0.attn_kv)") != std::string::npos, e);
  CHECK(e.find("the plan runs matmul on layer 0 reading blk.0.attn_kv.weight") != std::string::npos);
  CHECK(e.find("the CUDA executor runs rms_norm on layer 0") != std::string::npos);
  e = d.walk_difference(kv, OpKind::matmul, 0, "blk.0.attn_q_a.weight");
  CHECK(e.find("reading blk.0.attn_q_a.weight") != std::string::npos);
  CHECK(d.walk_difference(kv, OpKind::matmul, 1, "") != "");
  CHECK(d.walk_difference(kv, OpKind::matmul, 0, "") == "");  // no weight given: op and layer only
  // A paired node (the shared expert's gate and up) walks as one node reading both
  // weights; an executor running gate alone there is refused, naming both sides.
  uint32_t pair = 0;
  while (pair < d.nodes.size() && d.nodes[pair].name != "blk.0.ffn_gate_up_shexp") ++pair;
  REQUIRE(pair < d.nodes.size());
  CHECK(d.nodes[pair].weight == "blk.0.ffn_gate_shexp.weight");
  CHECK(d.nodes[pair].second == "blk.0.ffn_up_shexp.weight");
  CHECK(d.walk_difference(pair, OpKind::matmul, 0, "blk.0.ffn_gate_shexp.weight", "blk.0.ffn_up_shexp.weight") == "");
  e = d.walk_difference(pair, OpKind::matmul, 0, "blk.0.ffn_gate_shexp.weight");
  CHECK_MESSAGE(e.find("the plan runs matmul on layer 0 reading blk.0.ffn_gate_shexp.weight and "
                       "blk.0.ffn_up_shexp.weight, the CUDA executor runs matmul on layer 0 reading "
                       "blk.0.ffn_gate_shexp.weight") != std::string::npos,
                e);
  CHECK(d.walk_difference(kv, OpKind::matmul, 0, "blk.0.attn_kv.weight", "blk.0.attn_q_a.weight") != "");
  CHECK(d.nodes[kv].second.empty());
  // Both weights of every pair run under the pair's kernel.
  CHECK(d.by_weight.count("blk.0.ffn_up_shexp.weight") == 1);
  CHECK(d.by_weight.count("blk.2.indexer_compressor_gate.weight") == 1);
  CHECK(d.by_weight.count("blk.3.attn_compressor_gate.weight") == 1);
  e = d.walk_difference(uint32_t(d.nodes.size()), OpKind::add, 3, "");
  CHECK(e.find("past the plan's " + std::to_string(d.nodes.size()) + " nodes") != std::string::npos);
  e = d.walk_end_difference(d.head_first, true);
  CHECK_MESSAGE(e.find("(next: output_hc_head)") != std::string::npos, e);

  // A decode phase split in three: read as it is; a segment on another stream: refused.
  auto t = plan->root->UnPack();
  plan::PhaseT* dec = nullptr;
  for (auto& ph : t->phases)
    if (ph->name == "decode") dec = ph.get();
  REQUIRE(dec != nullptr);
  const uint32_t n = uint32_t(dec->nodes.size());
  dec->segments.clear();
  const std::vector<std::tuple<uint32_t, uint32_t, bool>> segs = {{0, 10, true}, {10, 2, false}, {12, n - 12, true}};
  for (const auto& [first, count, graph] : segs) {
    auto s = std::make_unique<plan::SegmentT>();
    s->first = first;
    s->count = count;
    s->graph = graph;
    dec->segments.push_back(std::move(s));
  }
  const cuda::ProductKernels split = cuda::product_kernels(verify_plan(serialize_plan(*t), "split.fplan"));
  REQUIRE(split.phases[0].segments.size() == 3);
  CHECK(split.phases[0].segments[1].first == 10);
  CHECK(!split.phases[0].segments[1].graph);
  CHECK(split.phases[0].segments[2].graph);
  dec->segments[2]->stream = 1;
  const LoadedPlan streams = verify_plan(serialize_plan(*t), "streams.fplan");
  e = error_of([&] { cuda::product_kernels(streams); });
  CHECK_MESSAGE(e.find("phase decode segment 2 (nodes 12..") != std::string::npos, e);
  CHECK(e.find("one stream") != std::string::npos);

  // A node renamed: the plan is not this build's op graph; refused with the first difference.
  dec->segments[2]->stream = 0;
  dec->nodes[kv]->name = "blk.0.attn_kv_renamed";
  const LoadedPlan renamed = verify_plan(serialize_plan(*t), "renamed.fplan");
  delete t;
  e = error_of([&] { plan_op_graph(renamed, builtin()); });
  CHECK_MESSAGE(e.find("renamed.fplan: the plan's node lists differ") != std::string::npos, e);
  CHECK(e.find("blk.0.attn_kv_renamed") != std::string::npos);
}

TEST_CASE("the planner never picks a kernel registered ahead of its implementation") {
  const auto plan = compile_for(builtin(), "h200-141gb", Numerics::plain);
  for (const plan::Phase* ph : *(*plan)->phases())
    for (const plan::Node* n : *ph->nodes()) {
      const KernelInfo* k = find_kernel(plan->kernel_id(*n));
      REQUIRE(k != nullptr);
      CHECK_MESSAGE(k->implemented, n->name()->str(), " in ", ph->name()->str(), ": ", k->id);
    }
}

TEST_CASE("a cuda plan runs on its probed GPU or on one its profile describes") {
  const auto plan = compile_for(builtin(), "h200-141gb", Numerics::plain);
  const plan::Device& d = *(*plan)->device();
  GpuIdentity h200{"NVIDIA H200", 9, 0, 132, 150754820096ull - (1ull << 30)};
  CHECK(plan_device_is(d, h200));
  GpuIdentity h100{"NVIDIA H100 80GB HBM3", 9, 0, 132, 85045231616ull};
  CHECK(!plan_device_is(d, h100));
  GpuIdentity other_cc = h200;
  other_cc.cc_minor = 1;
  CHECK(!plan_device_is(d, other_cc));
  const std::string e = error_of([&] { check_plan_for_gpu(*plan, builtin().file(), builtin().mtp_file(), h100); });
  CHECK(e.find("h200-141gb") != std::string::npos);
  CHECK(e.find("NVIDIA H100 80GB HBM3") != std::string::npos);
}
