// Programmatic dependent launch as a plan decision (Node.overlap_prev, Options.pdl):
//   - on a compute capability 9.0 profile every CUDA node is marked, in every phase,
//     except the nodes running the cuBLAS GEMM (cuda.gemm.dequant_cublas_f16) and the
//     collectives (NCCL): the decode phase of a one-GPU plan is marked node for node,
//     every op kind (embed, hc, norms, rope, attention, compressor, indexer, router, moe,
//     swiglu, add, head, sample, the products); a two-GPU plan leaves its all-reduce
//     nodes plain and marks the moe_combine after them;
//   - --no-pdl (CompileOptions::pdl = false) marks none and is recorded in the options;
//     a profile below 9.0 (A100) and a CPU profile mark none;
//   - inspect shows "[pdl]" rows and a count per phase; diff reports the option and the
//     nodes whose launch changed, folded over layers and phases;
//   - verify_plan refuses a hand-edited plan with overlap_prev on a GEMM node, an
//     all-reduce node, a node of a plan for a 8.0 device and a node of a CPU plan, naming
//     phase, node, kernel and what was expected.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <memory>

#include "ops/registry/kernel_registry.h"
#include "plan_test_util.h"
#include "planner/diff/plan_diff.h"
#include "planner/plan_io/plan_text.h"
#include "planner/plan_io/plan_view.h"

using namespace fp;
using fp::test::error_of;

namespace {

bool starts_with(const std::string& s, const char* p) { return s.rfind(p, 0) == 0; }

// The kernels whose launches cannot wait for the previous kernel: cuBLAS's and NCCL's.
bool plain_only(const std::string& id) {
  return starts_with(id, "cuda.gemm.") || starts_with(id, "cuda.grouped_gemm.") || starts_with(id, "cuda.nccl.");
}

LoadedPlan compiled(const Model& m, const std::string& profile, bool pdl = true) {
  CompileOptions o;
  o.pdl = pdl;
  return verify_plan(test::compile_bytes(m, test::shipped_profile(profile), o), profile + (pdl ? "" : ".no-pdl") + ".fplan");
}

struct Count {
  uint32_t marked = 0, nodes = 0, plain_only = 0;  // plain_only: GEMM and collective nodes
};

// Marked nodes, nodes and GEMM / collective nodes per phase name; fails on a marked node
// whose kernel cannot overlap.
std::map<std::string, Count> overlap_counts(const LoadedPlan& p) {
  std::map<std::string, Count> out;
  for (const auto* ph : *p->phases())
    for (const auto* n : *ph->nodes()) {
      const std::string id = p.kernel_id(*n);
      Count& c = out[ph->name()->str()];
      ++c.nodes;
      c.plain_only += plain_only(id);
      c.marked += n->overlap_prev();
      if (n->overlap_prev()) {
        CAPTURE(n->name()->str());
        CHECK(!plain_only(id));
        CHECK(starts_with(id, "cuda."));
      }
    }
  return out;
}

// The plan unpacked, with overlap_prev set on the first node of `phase` (any phase when
// empty) whose kernel id starts with `kernel`; the marked node's name in `name`.
std::vector<uint8_t> mark_first(const LoadedPlan& p, const std::string& phase, const std::string& kernel,
                                std::string& name) {
  std::unique_ptr<plan::PlanT> t(p->UnPack());
  for (auto& ph : t->phases) {
    if (!phase.empty() && ph->name != phase) continue;
    for (auto& n : ph->nodes)
      if (starts_with(t->kernels[n->kernel]->id, kernel.c_str())) {
        n->overlap_prev = true;
        name = n->name;
        return serialize_plan(*t);
      }
  }
  FAIL("no node running " << kernel << " in " << phase);
  return {};
}

}  // namespace

TEST_CASE("pdl: an sm_90 plan marks every node but the GEMM's, the decode step every node") {
  for (const char* profile : {"h100-sxm-80gb", "h200-141gb"}) {
    CAPTURE(profile);
    const LoadedPlan p = compiled(test::full_model(), profile);
    CHECK(p->provenance()->options()->pdl());
    uint32_t gemm = 0;
    for (const auto& [phase, c] : overlap_counts(p)) {
      CAPTURE(phase);
      CHECK(c.marked == c.nodes - c.plain_only);  // every other node (overlap_counts: and only those)
      if (phase.rfind("mtp", 0) != 0) CHECK(c.marked > 0);
      gemm += c.plain_only;
    }
    CHECK(gemm > 0);  // the largest prefill bucket's dense products go to the GEMM, which stays plain
    // The decode step: every node overlaps, whatever its op.
    const plan::Phase* dec = nullptr;
    for (const auto* ph : *p->phases())
      if (ph->kind() == plan::PhaseKind::decode) dec = ph;
    REQUIRE(dec != nullptr);
    std::map<plan::OpKind, uint32_t> marked;
    for (const auto* n : *dec->nodes()) {
      CAPTURE(n->name()->str());
      CHECK(n->overlap_prev());
      marked[n->op()] += n->overlap_prev();
    }
    CHECK(dec->nodes()->size() > 1000);  // 43 layers of ~28 nodes, the head
    for (plan::OpKind op : {plan::OpKind::embed, plan::OpKind::hc_pre, plan::OpKind::rms_norm, plan::OpKind::matmul,
                            plan::OpKind::grouped_matmul, plan::OpKind::q_head_norm_rope, plan::OpKind::kv_rope_store,
                            plan::OpKind::compressor, plan::OpKind::indexer_topk, plan::OpKind::attention,
                            plan::OpKind::out_inv_rope, plan::OpKind::hc_post, plan::OpKind::router, plan::OpKind::moe,
                            plan::OpKind::swiglu, plan::OpKind::add, plan::OpKind::output_hc_head, plan::OpKind::sample}) {
      CAPTURE(plan::EnumNameOpKind(op));
      CHECK(marked[op] > 0);
    }
    CHECK(marked[plan::OpKind::moe] == 43);  // one per layer, expert-indexed matvecs included
  }
}

TEST_CASE("pdl: a two-GPU plan leaves its all-reduce nodes plain and marks the rest") {
  const LoadedPlan p = compiled(test::full_model(), "2x-h100-sxm-80gb");
  REQUIRE(p->device()->gpus() == 2);
  uint32_t reduces = 0, combines = 0;
  for (const auto* ph : *p->phases())
    for (const auto* n : *ph->nodes()) {
      CAPTURE(n->name()->str());
      const std::string id = p.kernel_id(*n);
      CHECK(n->overlap_prev() == !plain_only(id));
      if (n->op() == plan::OpKind::all_reduce) {
        ++reduces;
        CHECK(!n->overlap_prev());
      }
      combines += n->op() == plan::OpKind::moe_combine && n->overlap_prev();
    }
  CHECK(reduces > 0);
  CHECK(combines > 0);
}

TEST_CASE("pdl: --no-pdl, a profile below 9.0 and a CPU profile mark nothing") {
  const LoadedPlan off = compiled(test::full_model(), "h200-141gb", false);
  CHECK(!off->provenance()->options()->pdl());
  for (const auto& [phase, c] : overlap_counts(off)) CHECK(c.marked == 0);

  const LoadedPlan a100 = compiled(test::tiny_model(), "a100-80gb");
  CHECK(a100->device()->cc_major() == 8);
  CHECK(a100->provenance()->options()->pdl());  // asked for; the device cannot
  uint32_t nodes = 0;
  for (const auto& [phase, c] : overlap_counts(a100)) {
    CHECK(c.marked == 0);
    nodes += c.nodes;
  }
  CHECK(nodes > 0);

  const LoadedPlan cpu = compiled(test::tiny_model(), "cpu");
  for (const auto& [phase, c] : overlap_counts(cpu)) CHECK(c.marked == 0);
}

TEST_CASE("pdl: inspect marks the rows and counts them; diff reports the option and the launches") {
  const LoadedPlan on = compiled(test::full_model(), "h200-141gb");
  const LoadedPlan off = compiled(test::full_model(), "h200-141gb", false);
  const std::string t_on = plan_to_text(on), t_off = plan_to_text(off);
  CHECK(t_on.find("PDL on") != std::string::npos);
  CHECK(t_off.find("PDL off") != std::string::npos);
  CHECK(t_on.find("cuda.matvec.q8_0 [pdl]") != std::string::npos);
  CHECK(t_on.find("start while the previous kernel finishes") != std::string::npos);
  CHECK(t_off.find("[pdl]") == std::string::npos);

  const PlanDiff d = diff_plans(on, off);
  CHECK(!d.equal());
  bool option = false;
  for (const auto& f : d.fields) option |= f.section == "options" && f.name == "pdl" && f.a == "1" && f.b == "0";
  CHECK(option);
  CHECK(d.kernels.empty());  // the same kernels, launched differently
  CHECK(d.times.empty());    // predicted times do not model the overlap (not yet measured in a step)
  bool q_b = false;
  for (const auto& l : d.launches) {
    CHECK(l.from == "pdl");
    CHECK(l.to == "plain");
    if (l.role == "attn_q_b") {
      q_b = format_layers(l.layers) == "0-42";
      CHECK(std::find(l.phases.begin(), l.phases.end(), "decode") != l.phases.end());
    }
  }
  CHECK(q_b);
  const std::string text = diff_to_text(d, "on.fplan", "off.fplan");
  CHECK(text.find("pdl: 1 -> 0") != std::string::npos);
  CHECK(text.find("blk.0-42 attn_q_b: pdl -> plain") != std::string::npos);
  const auto j = diff_to_json(d, "on.fplan", "off.fplan");
  CHECK(j["launches"].size() == d.launches.size());
  CHECK(diff_plans(on, on).equal());
}

TEST_CASE("pdl: verify refuses overlap_prev on a node whose kernel cannot overlap, naming it") {
  // The registry says which kernels wait for the previous one inside themselves.
  CHECK(find_kernel("cuda.matvec.q8_0")->overlap_min_cc == 90);
  CHECK(find_kernel("cuda.matvec.q8_0.xf32")->overlap_min_cc == 90);
  CHECK(find_kernel("cuda.grouped_matvec.q8_0")->overlap_min_cc == 90);
  CHECK(find_kernel("cuda.gemm.dequant_cublas_f16")->overlap_min_cc == 0);
  CHECK(find_kernel("cuda.nccl.all_reduce")->overlap_min_cc == 0);
  CHECK(find_kernel("cuda.mtp_embed_proj")->overlap_min_cc == 0);  // no CUDA launcher yet
  CHECK(find_kernel("cuda.moe.grouped_int8_tc")->overlap_min_cc == 0);  // registered ahead of its kernel
  for (const char* id : {"cuda.moe.matvec", "cuda.moe.grouped_dequant_mma", "cuda.rms_norm", "cuda.hc_pre",
                         "cuda.attention.decode", "cuda.attention.prefill", "cuda.router", "cuda.sample",
                         "cuda.indexer_topk.decode", "cuda.compressor", "cuda.embed", "cuda.moe.combine"}) {
    CAPTURE(id);
    CHECK(find_kernel(id)->overlap_min_cc == 90);
  }
  CHECK(overlap_rejection(*find_kernel("cuda.matvec.q8_0"), 90) == "");
  CHECK(overlap_rejection(*find_kernel("cuda.matvec.q8_0"), 89) != "");

  const LoadedPlan h200 = compiled(test::full_model(), "h200-141gb");
  struct Case {
    const LoadedPlan* plan;
    std::string phase, kernel, why;
  };
  const LoadedPlan two = compiled(test::full_model(), "2x-h100-sxm-80gb");
  const LoadedPlan a100 = compiled(test::tiny_model(), "a100-80gb");
  const LoadedPlan cpu = compiled(test::tiny_model(), "cpu");
  const std::vector<Case> cases = {
      {&h200, "prefill.513-2048", "cuda.gemm.dequant_cublas_f16", "no programmatic dependent launch"},
      {&two, "decode", "cuda.nccl.all_reduce", "no programmatic dependent launch"},
      {&a100, "decode", "cuda.matvec.", "from compute capability 9.0, the device has 8.0"},
      {&a100, "decode", "cuda.rms_norm", "from compute capability 9.0, the device has 8.0"},
      {&cpu, "decode", "cpu.matmul", "CPU device"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.kernel);
    std::string node;
    std::vector<uint8_t> bytes = mark_first(*c.plan, c.phase, c.kernel, node);
    const std::string e = error_of([&] { verify_plan(std::move(bytes), "edited.fplan"); });
    CHECK(e.find("edited.fplan") != std::string::npos);
    CHECK(e.find("phase " + c.phase + " node " + node) != std::string::npos);
    CHECK(e.find(c.kernel) != std::string::npos);
    CHECK(e.find("overlap_prev") != std::string::npos);
    CHECK(e.find(c.why) != std::string::npos);
    CHECK(e.find("expected overlap_prev only on") != std::string::npos);
  }
  // The plan as compiled passes.
  std::unique_ptr<plan::PlanT> t(h200->UnPack());
  CHECK_NOTHROW(verify_plan(serialize_plan(*t), "as-compiled.fplan"));
}
