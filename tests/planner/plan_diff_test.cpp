// diff by meaning: a plan equals itself; H100 vs H200 shows the moved experts, device
// fields, memory and time deltas; an override shows up as a folded kernel change; layer
// lists print compactly.
#include <algorithm>
#include <doctest/doctest.h>

#include "plan_test_util.h"
#include "planner/diff/plan_diff.h"
#include "planner/plan_io/plan_view.h"

using namespace fp;

namespace {

LoadedPlan compiled(const std::string& profile, CompileOptions o = {}) {
  return verify_plan(test::compile_bytes(test::full_model(), test::shipped_profile(profile), std::move(o)), profile);
}

}  // namespace

TEST_CASE("plan view: layer lists and roles") {
  CHECK(format_layers({}) == "-");
  CHECK(format_layers({7}) == "7");
  CHECK(format_layers({3, 1, 2, 0}) == "0-3");
  CHECK(format_layers({2, 4, 6, 8}) == "2-8/2");
  CHECK(format_layers({0, 1, 3, 38, 39, 40}) == "0-1,3,38-40");
  CHECK(node_role("blk.12.attn_q_b") == "attn_q_b");
  CHECK(node_role("mtp.attn_q_b") == "mtp.attn_q_b");
  CHECK(weight_role("blk.40.ffn_up_exps.weight") == "ffn_up_exps");
  CHECK(layer_of("blk.40.ffn_up_exps.weight") == 40);
  CHECK(layer_of("output.weight") == -1);
}

TEST_CASE("diff: a plan equals itself") {
  const LoadedPlan a = compiled("h200-141gb");
  const LoadedPlan b = compiled("h200-141gb");
  const PlanDiff d = diff_plans(a, b);
  CHECK(d.equal());
  CHECK(diff_to_text(d, "a", "b").find("equal in meaning") != std::string::npos);
  CHECK(diff_to_json(d, "a", "b")["equal"] == true);
}

TEST_CASE("diff: H100 vs H200 of the full model") {
  const LoadedPlan h100 = compiled("h100-sxm-80gb");
  const LoadedPlan h200 = compiled("h200-141gb");
  const PlanDiff d = diff_plans(h100, h200);
  CHECK(!d.equal());
  bool name = false;
  for (const auto& f : d.fields) name |= f.name == "name" && f.a == "h100-sxm-80gb" && f.b == "h200-141gb";
  CHECK(name);
  // Exactly the offloaded experts moved back to the device, folded by role.
  REQUIRE(d.placements.size() == 3);
  uint32_t moved = 0;
  for (const auto& p : d.placements) {
    CHECK(p.from == "host_mapped");
    CHECK(p.to == "device_chunk");
    CHECK(p.role.find("_exps") != std::string::npos);
    CHECK(p.layers.back() == 42);
    moved += uint32_t(p.layers.size());
  }
  CHECK(moved == h100->memory()->offloaded_tensors());
  bool host_delta = false;
  for (const auto& m : d.memory) host_delta |= m.name == "weights in host memory" && m.a > 0 && m.b == 0;
  CHECK(host_delta);
  bool decode_faster = false;
  for (const auto& t : d.times) decode_faster |= t.name == "decode" && t.b < t.a;
  CHECK(decode_faster);
  const std::string text = diff_to_text(d, "h100.fplan", "h200.fplan");
  CHECK(text.find("ffn_down_exps") != std::string::npos);
  CHECK(text.find("host_mapped -> device_chunk") != std::string::npos);
}

TEST_CASE("diff: kernel changes fold over layers and phases") {
  CompileOptions o;
  o.overrides = {parse_override("blk.*.attn_q_b=cuda.gemm.dequant_cublas_f16")};
  const LoadedPlan a = compiled("h200-141gb");
  const LoadedPlan b = compiled("h200-141gb", o);
  const PlanDiff d = diff_plans(a, b);
  REQUIRE(!d.kernels.empty());
  bool decode = false;
  for (const auto& k : d.kernels) {
    CHECK(k.role == "attn_q_b");
    CHECK(k.to == "cuda.gemm.dequant_cublas_f16");
    if (k.from == "cuda.matvec.q8_0") {
      decode = true;
      CHECK(format_layers(k.layers) == "0-42");
      // The matvec also wins the shortest prefill bucket; the longer ones take the GEMM.
      CHECK(std::find(k.phases.begin(), k.phases.end(), "decode") != k.phases.end());
      CHECK(std::find(k.phases.begin(), k.phases.end(), "prefill.513-2048") == k.phases.end());
    }
  }
  CHECK(decode);
  const std::string text = diff_to_text(d, "a", "b");
  CHECK(text.find("decode: blk.0-42 attn_q_b: cuda.matvec.q8_0 -> cuda.gemm.dequant_cublas_f16") != std::string::npos);
  CHECK(text.find("overrides: (none) -> blk.*.attn_q_b=cuda.gemm.dequant_cublas_f16") != std::string::npos);
  const auto j = diff_to_json(d, "a", "b");
  CHECK(j["equal"] == false);
  CHECK(j["kernels"].size() == d.kernels.size());
}
