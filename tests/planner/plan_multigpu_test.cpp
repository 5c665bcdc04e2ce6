// Multi-GPU plans (issue 8, the planner half): profile validation, expert-parallel
// placement of every expert exactly once, per-device memory, collectives with sane
// predicted times, the replicated / split choice, determinism, one-GPU plans unchanged,
// diff output, and how the runtime matches a plan for several GPUs to the host's GPUs.
#include <doctest/doctest.h>

#include <map>
#include <set>

#include "plan_test_util.h"
#include "planner/diff/plan_diff.h"
#include "planner/graph/op_graph.h"
#include "planner/plan_io/plan_text.h"
#include "runtime/plan/plan_binding.h"

using namespace fp;
using namespace fp::test;

namespace {

const char* kTwoGpus = R"(name: two
backend: cuda
memory: {bytes: 85017493504, usable_bytes: 84465090560, bandwidth_gbps: 3350}
gpu:
  compute_capability: "9.0"
  sm_count: 132
  smem_per_sm_bytes: 233472
  sm_clock_mhz: 1980
  fp32_tflops: 66.9
  tensor_tflops: {fp16: 989.4, bf16: 989.4, fp8: 1978.9, int8: 1978.9}
  vmm_granularity: 2097152
links: {pcie_gbps: 64}
)";

std::string with_host(const std::string& host) { return std::string(kTwoGpus) + "host:\n" + host; }

std::string why_not(const plan::ParallelOption* o) { return o->why_not() ? o->why_not()->str() : std::string(); }

LoadedPlan full_plan(const std::string& profile, bool exact_parallel = true) {
  CompileOptions o;
  o.exact_parallel = exact_parallel;
  return verify_plan(compile_bytes(full_model(), shipped_profile(profile), o), profile + ".fplan");
}

}  // namespace

TEST_CASE("multi-GPU profiles: link bandwidth and collective latency are required, cpu hosts have no GPUs") {
  CHECK(error_of([] { parse_device_profile(with_host("  gpus: 2\n  collective_latency_us: 6\n"), "p.yaml"); })
            .find("host.gpu_link_gbps: missing with host.gpus = 2") != std::string::npos);
  CHECK(error_of([] { parse_device_profile(with_host("  gpus: 2\n  gpu_link_gbps: 450\n"), "p.yaml"); })
            .find("host.collective_latency_us: missing with host.gpus = 2") != std::string::npos);
  CHECK(error_of([] {
          parse_device_profile(with_host("  gpus: 2\n  gpu_link_gbps: 450\n  collective_latency_us: -1\n"), "p.yaml");
        }).find("host.collective_latency_us: value -1 is out of range") != std::string::npos);
  const DeviceProfile p =
      parse_device_profile(with_host("  gpus: 2\n  gpu_link_gbps: 450\n  collective_latency_us: 6\n"), "p.yaml");
  CHECK(p.host_gpus == 2);
  CHECK(p.rates().devices == 2);
  CHECK(p.rates().gpu_link == doctest::Approx(450e9));
  CHECK(p.rates().collective_latency_us == doctest::Approx(6));
  for (const char* name : {"2x-h100-sxm-80gb", "8x-h100-sxm-80gb", "2x-h200-141gb"}) {
    CAPTURE(name);
    const DeviceProfile s = shipped_profile(name);
    CHECK(s.host_gpus > 1);
    CHECK(s.host_link_gbps == doctest::Approx(450));
    CHECK(s.collective_latency_us > 0);
  }
}

TEST_CASE("busiest device under uniform routing: 6 of 256 experts") {
  CHECK(expected_busiest_experts(256, 6, 1) == doctest::Approx(6));
  const double two = expected_busiest_experts(256, 6, 2);
  CHECK(two > 3.0);
  CHECK(two < 6.0);
  const double eight = expected_busiest_experts(256, 6, 8);
  CHECK(eight > 1.0);
  CHECK(eight < two);
  CHECK(expected_busiest_experts(256, 6, 256) == doctest::Approx(1.0));
}

TEST_CASE("2x H100: every routed expert on exactly one device, the rest on every device") {
  const LoadedPlan lp = full_plan("2x-h100-sxm-80gb");
  const plan::Plan& p = *lp;
  REQUIRE(p.device()->gpus() == 2);
  const ModelConfig& c = full_model().config();
  std::map<std::string, std::vector<int>> experts_on;  // tensor -> owner per expert
  for (const auto* w : *p.weights()) {
    CAPTURE(w->name()->str());
    REQUIRE(w->slices());
    REQUIRE(w->slices()->size() == 2);
    CHECK(w->device() == -1);
    const std::string name = w->name()->str();
    const bool routed = name.find("_exps.") != std::string::npos;
    uint64_t bytes = 0;
    for (const auto* sl : *w->slices()) {
      const auto* chunk = p.chunks()->Get(sl->chunk());
      CHECK(chunk->device() == sl->device());
      CHECK(sl->chunk_offset() + sl->bytes() <= chunk->bytes());
      bytes += sl->bytes();
      if (routed) {
        CHECK(sl->axis() == plan::SliceAxis::outer);
        auto& owner = experts_on[name];
        owner.resize(c.n_expert, -1);
        for (uint64_t e = sl->first(); e < sl->first() + sl->count(); ++e) {
          CHECK(owner[e] == -1);
          owner[e] = sl->device();
        }
      } else if (sl->axis() == plan::SliceAxis::whole) {
        CHECK(sl->bytes() == w->bytes());
      }
    }
    if (routed || w->slices()->Get(0)->axis() != plan::SliceAxis::whole) CHECK(bytes == w->bytes());
  }
  CHECK(experts_on.size() == 3 * c.n_layer);
  for (const auto& [name, owner] : experts_on) {
    CAPTURE(name);
    for (uint32_t e = 0; e < c.n_expert; ++e) CHECK(owner[e] == (e < c.n_expert / 2 ? 0 : 1));
  }
}

TEST_CASE("2x H100: per-device memory sums to the plan's and fits every device") {
  const LoadedPlan lp = full_plan("2x-h100-sxm-80gb");
  const plan::Memory& m = *lp->memory();
  REQUIRE(m.devices());
  REQUIRE(m.devices()->size() == 2);
  uint64_t total = 0, weights = 0;
  std::vector<uint64_t> chunk_bytes(2, 0);
  for (const auto* c : *lp->chunks()) {
    CHECK(c->placement() != plan::Placement::host_mapped);
    chunk_bytes.at(c->device()) += c->bytes();
  }
  for (const auto* d : *m.devices()) {
    CAPTURE(d->device());
    CHECK(d->total_bytes() == d->weights_bytes() + d->kv_bytes() + d->activation_bytes() + d->workspace_bytes() +
                                  d->reserve_bytes());
    CHECK(d->total_bytes() <= d->usable_bytes());
    CHECK(d->headroom_bytes() >= 0);
    CHECK(d->weights_bytes() == chunk_bytes[d->device()]);
    total += d->total_bytes();
    weights += d->weights_bytes();
  }
  CHECK(m.total_device_bytes() == total);
  CHECK(m.weights_device_bytes() == weights);
  CHECK(m.weights_host_bytes() == 0);
  // The model (80.76 GiB) no longer fits one H100 without offload; split, each holds about half of the experts.
  CHECK(weights > lp->model()->tensor_bytes());
}

TEST_CASE("2x H100: by default attention, shared expert and head stay replicated; the splits are priced, not chosen") {
  const LoadedPlan lp = full_plan("2x-h100-sxm-80gb");
  const plan::Parallelism* par = lp->parallelism();
  REQUIRE(par);
  CHECK(lp->provenance()->options()->exact_parallel());
  CHECK(par->attention() == plan::Parallel::replicated);
  CHECK(par->shared_expert() == plan::Parallel::replicated);
  CHECK(par->head() == plan::Parallel::replicated);
  REQUIRE(par->options()->size() == 8);
  CHECK(why_not(par->options()->Get(0)).empty());
  for (uint32_t i = 1; i < 8; ++i) {
    const auto* o = par->options()->Get(i);
    CHECK(o->decode_us() > 0);  // priced
    CHECK(why_not(o).find("exact parallelism (the default; --inexact-parallel weighs it)") == 0);
  }
}

TEST_CASE("2 GPUs: when only a split option would fit, the no-fit error names --inexact-parallel") {
  const LoadedPlan lp = full_plan("2x-h100-sxm-80gb");
  uint64_t replicated = 0, split = UINT64_MAX;
  for (const auto* o : *lp->parallelism()->options()) {
    const bool all_replicated = o->attention() == plan::Parallel::replicated &&
                                o->shared_expert() == plan::Parallel::replicated && o->head() == plan::Parallel::replicated;
    if (all_replicated) replicated = o->max_device_bytes();
    else split = std::min<uint64_t>(split, o->max_device_bytes());
  }
  REQUIRE(split < replicated);
  DeviceProfile p = shipped_profile("2x-h100-sxm-80gb");
  p.usable_bytes = (replicated + split) / 2;  // room for a split, not for the replicated parts
  const std::string e = error_of([&] { compile_bytes(full_model(), p); });
  CHECK(e.find("does not fit") != std::string::npos);
  CHECK(e.find("every exact option was tried") != std::string::npos);
  CHECK(e.find("with --inexact-parallel") != std::string::npos);
  CompileOptions o;
  o.exact_parallel = false;
  CHECK_NOTHROW(compile_bytes(full_model(), p, o));
}

TEST_CASE("2x H100: collectives are nodes with sane predicted times, and the choice is recorded") {
  for (bool exact : {true, false}) {
    CAPTURE(exact);
    const LoadedPlan lp = full_plan("2x-h100-sxm-80gb", exact);
    const plan::Plan& p = *lp;
    const uint32_t layers = p.model()->config()->n_layer();
    const plan::Parallelism* par = p.parallelism();
    REQUIRE(par);
    CHECK(par->devices() == 2);
    CHECK(par->routed_experts() == plan::Parallel::expert_split);
    REQUIRE(par->options());
    CHECK(par->options()->size() == 8);
    CHECK(par->options()->Get(0)->fits());
    // The chosen option is the fastest of those that fit and were not excluded.
    for (const auto* o : *par->options())
      if (o->fits() && why_not(o).empty()) CHECK(o->decode_us() >= par->options()->Get(0)->decode_us());
    if (!exact) CHECK(par->attention() == plan::Parallel::tensor_split);  // the cost model's pick on 2x H100
    for (const auto* ph : *p.phases()) {
      CAPTURE(ph->name()->str());
      uint32_t reduce = 0, gather = 0;
      for (const auto* n : *ph->nodes()) {
        const bool coll = n->op() == plan::OpKind::all_reduce || n->op() == plan::OpKind::all_gather;
        CHECK(coll == (n->parallel() == plan::Parallel::collective));
        CHECK(n->device() == -1);
        if (!coll) continue;
        (n->op() == plan::OpKind::all_reduce ? reduce : gather)++;
        CHECK(lp.kernel_id(*n) == (n->op() == plan::OpKind::all_reduce ? "cuda.nccl.all_reduce" : "cuda.nccl.all_gather"));
        CHECK(n->link_bytes() > 0);
        // latency + 2(N-1)/N * bytes / 450 GB/s (all-reduce), (N-1)/N * bytes / bw (all-gather)
        const double factor = n->op() == plan::OpKind::all_reduce ? 1.0 : 0.5;
        CHECK(n->predicted_us() == doctest::Approx(6.0 + factor * n->link_bytes() / 450e9 * 1e6).epsilon(1e-4));
      }
      if (ph->kind() == plan::PhaseKind::mtp_draft) {
        CHECK(reduce >= 1);
      } else {
        // One per layer for the experts' slot outputs, one more per layer for each split part.
        const uint32_t per_layer = 1 + (par->attention() == plan::Parallel::tensor_split ? 1 : 0) +
                                   (par->shared_expert() == plan::Parallel::tensor_split ? 1 : 0);
        CHECK(reduce == per_layer * layers);
        CHECK(gather == (par->head() == plan::Parallel::tensor_split ? 1u : 0u));
      }
      // Every moe node is expert_split, writes the per-slot buffer, and is followed by the
      // all-reduce of that buffer (k slots of n_embd floats per token) and the combine.
      const auto& nodes = *ph->nodes();
      const uint32_t k = p.model()->config()->n_expert_used(), e = p.model()->config()->n_embd();
      for (uint32_t i = 0; i < nodes.size(); ++i) {
        const plan::Node* n = nodes.Get(i);
        if (n->op() != plan::OpKind::moe) continue;
        CAPTURE(n->name()->str());
        CHECK(n->parallel() == plan::Parallel::expert_split);
        REQUIRE(i + 2 < nodes.size());
        const plan::Node* r = nodes.Get(i + 1);
        const plan::Node* c = nodes.Get(i + 2);
        CHECK(p.buffers()->Get(n->outputs()->Get(0))->name()->str() == "moe_slots");
        CHECK(r->op() == plan::OpKind::all_reduce);
        CHECK(r->inputs()->Get(0) == n->outputs()->Get(0));
        CHECK(r->link_bytes() == doctest::Approx(4.0 * n->tokens() * k * e));
        CHECK(c->op() == plan::OpKind::moe_combine);
        CHECK(c->parallel() == plan::Parallel::replicated);
        CHECK(lp.kernel_id(*c) == "cuda.moe.combine");
        CHECK(p.buffers()->Get(c->outputs()->Get(0))->name()->str() == "moe_out");
      }
    }
  }
}

TEST_CASE("multi-GPU plans are deterministic; one-GPU plans have no multi-GPU fields") {
  const DeviceProfile two = shipped_profile("2x-h100-sxm-80gb");
  CHECK(compile_bytes(full_model(), two) == compile_bytes(full_model(), two));
  const LoadedPlan one = full_plan("h200-141gb");
  CHECK(one->device()->gpus() == 1);
  CHECK(one->parallelism() == nullptr);
  CHECK((one->memory()->devices() == nullptr || one->memory()->devices()->size() == 0));
  for (const auto* w : *one->weights()) CHECK((w->slices() == nullptr || w->slices()->size() == 0));
  for (const auto* ph : *one->phases())
    for (const auto* n : *ph->nodes()) {
      CHECK(n->device() == 0);
      CHECK(n->parallel() == plan::Parallel::single);
    }
}

TEST_CASE("8x H100: experts split eight ways, more collectives cost more per step than two GPUs' do") {
  const LoadedPlan eight = full_plan("8x-h100-sxm-80gb");
  REQUIRE(eight->memory()->devices()->size() == 8);
  for (const auto* w : *eight->weights())
    if (w->name()->str() == "blk.0.ffn_up_exps.weight")
      for (const auto* sl : *w->slices()) CHECK(sl->count() == 32);
}

TEST_CASE("a model that fits no split says so per device") {
  DeviceProfile p = shipped_profile("2x-h100-sxm-80gb");
  p.usable_bytes = 30ull << 30;
  const std::string e = error_of([&] { compile_bytes(full_model(), p); });
  CHECK(e.find("does not fit 2x-h100-sxm-80gb") != std::string::npos);
  CHECK(e.find("on device") != std::string::npos);
  CHECK(e.find("short by") != std::string::npos);
  // The closest option is named part by part (the default keeps every part replicated).
  CHECK(e.find("routed experts split, attention replicated, shared expert replicated, head replicated") !=
        std::string::npos);
}

TEST_CASE("diff of a one-GPU and a two-GPU plan shows the placement and the collectives") {
  const LoadedPlan a = full_plan("h200-141gb");
  const LoadedPlan b = full_plan("2x-h100-sxm-80gb");
  const PlanDiff d = diff_plans(a, b);
  CHECK(!d.equal());
  const std::string t = diff_to_text(d, "a", "b");
  CHECK(t.find("gpus: 1 -> 2") != std::string::npos);
  CHECK(t.find("routed_experts: single -> expert_split") != std::string::npos);
  CHECK(t.find("ffn_up_exps") != std::string::npos);
  CHECK(t.find("split over 2 devices (outer dim)") != std::string::npos);
  CHECK(t.find("collectives per step") != std::string::npos);
  CHECK(t.find("decode: 0 all_reduce + 0 all_gather") != std::string::npos);
  CHECK(t.find("device 1 total") != std::string::npos);
  CHECK(t.find("only in B") == std::string::npos);  // collectives are not listed as extra nodes
  const std::string text = plan_to_text(b);
  CHECK(text.find("parallelism over 2 GPUs") != std::string::npos);
  CHECK(text.find("memory per device") != std::string::npos);
  CHECK(text.find("collectives:") != std::string::npos);
}

TEST_CASE("a plan for several GPUs: the single-GPU engine refuses it, each GPU is matched, too few GPUs are refused") {
  const LoadedPlan lp = verify_plan(compile_bytes(tiny_model(), shipped_profile("2x-h100-sxm-80gb")), "two.fplan");
  GpuIdentity h100{"NVIDIA H100 80GB HBM3", 9, 0, 132, 85045231616ull};
  GpuIdentity h200{"NVIDIA H200", 9, 0, 132, 150754820096ull};
  const gguf::File& f = tiny_model().file();
  CHECK(error_of([&] { check_plan_for_gpu(lp, f, tiny_model().mtp_file(), h100); })
            .find("plan for 2 GPUs: the single-GPU CUDA engine runs plans for one GPU") != std::string::npos);
  check_plan_for_gpus(lp, f, tiny_model().mtp_file(), {h100, h100});
  check_plan_for_gpus(lp, f, tiny_model().mtp_file(), {h100, h100, h200});  // more GPUs than the plan's: the first two
  CHECK(error_of([&] { check_plan_for_gpus(lp, f, tiny_model().mtp_file(), {h100}); })
            .find("plan for 2 GPUs, 1 visible") != std::string::npos);
  const std::string e = error_of([&] { check_plan_for_gpus(lp, f, tiny_model().mtp_file(), {h100, h200}); });
  CHECK(e.find("GPU 1 is NVIDIA H200") != std::string::npos);
  // The op graph this build makes with the plan's options is the plan's (the split is read back).
  CHECK(first_graph_difference(lp, build_op_graph(tiny_model(), plan_graph_options(lp))) == "");
}
