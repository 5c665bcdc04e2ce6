// What `flashplan tune` times (planner/profile/tune_targets.h): the plan's matmul and
// grouped_matmul shape keys with a choice, each once, with every valid kernel; timings
// filed for all of them decide the choice by measurement.
#include <doctest/doctest.h>

#include <map>
#include <set>

#include "ops/core/error.h"
#include "planner/plan_io/plan_io.h"
#include "planner/plan_io/plan_shape.h"
#include "planner/profile/tune_targets.h"
#include "plan_test_util.h"

using namespace fp;

namespace {

LoadedPlan full_plan(const DeviceProfile& p) {
  return verify_plan(test::compile_bytes(test::full_model(), p), "full.fplan");
}

}  // namespace

TEST_CASE("tune targets: every product key with a choice, once, with all its valid kernels") {
  DeviceProfile h200 = test::shipped_profile("h200-141gb");
  h200.measured.clear();
  const LoadedPlan lp = full_plan(h200);
  const auto targets = tune_targets(*lp, "full.fplan");
  REQUIRE(!targets.empty());
  std::set<std::string> keys;
  uint32_t nodes = 0;
  bool decode = false, prefill = false, grouped = false, paired = false;
  for (const TuneTarget& t : targets) {
    CAPTURE(t.shape);
    CHECK(keys.insert(t.shape).second);
    CHECK((t.op == OpKind::matmul || t.op == OpKind::grouped_matmul));
    CHECK(t.kernels.size() >= 2);
    CHECK(t.rows > 0);
    CHECK(t.cols > 0);
    CHECK(t.shape.find(" w=" + std::string(dtype_name(t.type))) != std::string::npos);
    decode |= t.tokens == 1;
    prefill |= t.tokens == 2048;
    grouped |= t.op == OpKind::grouped_matmul && t.groups > 1;
    paired |= t.paired;
    nodes += t.nodes;
  }
  CHECK(decode);
  CHECK(prefill);
  CHECK(grouped);
  CHECK(paired);
  // The same count from the plan itself: product nodes with two or more valid kernels.
  uint32_t want = 0;
  for (const plan::Phase* ph : *lp->phases())
    for (const plan::Node* n : *ph->nodes()) {
      const auto op = static_cast<OpKind>(n->op());
      if (op != OpKind::matmul && op != OpKind::grouped_matmul) continue;
      int valid = 0;
      for (const plan::Candidate* c : *n->candidates()) valid += c->note() == 0;
      want += valid >= 2;
    }
  CHECK(nodes == want);
}

TEST_CASE("tune targets: timings for every candidate make the fastest measured one the plan's choice") {
  DeviceProfile h200 = test::shipped_profile("h200-141gb");
  h200.measured.clear();
  const LoadedPlan before = full_plan(h200);
  // Claim the last valid kernel of each key fastest (1 us), the others slow (1000 us).
  std::map<std::string, std::string> fastest;
  for (const TuneTarget& t : tune_targets(*before, "before.fplan")) {
    fastest[t.shape] = t.kernels.back();
    for (const std::string& k : t.kernels) h200.measured.push_back({k, t.shape, k == t.kernels.back() ? 1.0 : 1000.0});
  }
  const LoadedPlan after = full_plan(h200);
  uint32_t checked = 0;
  for (const plan::Phase* ph : *after->phases())
    for (const plan::Node* n : *ph->nodes()) {
      const auto it = fastest.find(node_shape_key(*after, *n));
      if (it == fastest.end()) continue;
      CAPTURE(n->name()->str());
      CHECK(after.kernel_id(*n) == it->second);
      CHECK(n->choice() == plan::Choice::measured);
      ++checked;
    }
  CHECK(checked > 0);
}

TEST_CASE("tune targets: a plan for the CPU backend is refused, naming the file and the backend") {
  const LoadedPlan cpu = verify_plan(test::compile_bytes(test::tiny_model(), test::shipped_profile("cpu")), "cpu.fplan");
  std::string e;
  try {
    tune_targets(*cpu, "cpu.fplan");
  } catch (const Error& x) {
    e = x.what();
  }
  CHECK(e.find("cpu.fplan: a plan for backend cpu") != std::string::npos);
  CHECK(e.find("tune times CUDA kernels") != std::string::npos);
}
