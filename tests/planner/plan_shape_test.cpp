// Shape keys rebuilt from a plan (planner/plan_io/plan_shape.h) are the keys the planner
// priced each node under: filing every (kernel, key) of a plan as measured at the plan's
// own predicted time must mark every node `measured` and change nothing else.
#include <doctest/doctest.h>

#include <map>
#include <utility>

#include "planner/plan_io/plan_io.h"
#include "planner/plan_io/plan_shape.h"
#include "plan_test_util.h"

using namespace fp;

namespace {

LoadedPlan compiled(const Model& m, const DeviceProfile& p, CompileOptions o = {}) {
  return verify_plan(test::compile_bytes(m, p, std::move(o)), "compiled plan");
}

void check_round_trip(const Model& model, DeviceProfile profile, CompileOptions o = {}) {
  CAPTURE(profile.name);
  profile.measured.clear();  // a shipped profile's own timings (h200-141gb) aside
  const LoadedPlan before = compiled(model, profile, o);
  const auto shapes = plan_shapes(*before);
  REQUIRE(!shapes.empty());
  uint32_t nodes = 0;
  for (const PlanShape& s : shapes) {
    nodes += s.nodes;
    CHECK(!s.measured);
    profile.measured.push_back({s.kernel, s.shape, s.predicted_us});
  }
  const LoadedPlan after = compiled(model, profile, o);
  std::map<std::pair<std::string, std::string>, double> want;
  for (const PlanShape& s : shapes) want[{s.kernel, s.shape}] = s.predicted_us;
  uint32_t seen = 0;
  REQUIRE(after->phases()->size() == before->phases()->size());
  for (uint32_t i = 0; i < after->phases()->size(); ++i) {
    const plan::Phase* pa = after->phases()->Get(i);
    const plan::Phase* pb = before->phases()->Get(i);
    REQUIRE(pa->nodes()->size() == pb->nodes()->size());
    double sum = 0;
    for (uint32_t j = 0; j < pa->nodes()->size(); ++j) {
      const plan::Node* a = pa->nodes()->Get(j);
      const plan::Node* b = pb->nodes()->Get(j);
      const std::string key = node_shape_key(*after, *a);
      CAPTURE(key);
      CHECK(key == node_shape_key(*before, *b));
      CHECK(after.kernel_id(*a) == before.kernel_id(*b));
      CHECK(a->choice() == plan::Choice::measured);
      CHECK(a->predicted_us() == doctest::Approx(want.at({after.kernel_id(*a), key})));
      sum += want.at({after.kernel_id(*a), key});
      ++seen;
    }
    // The phase is priced from the measured timings (nodes of one key the cost model priced
    // apart, e.g. by activation bytes the key does not name, now share the first one's).
    CHECK(pa->predicted_us() == doctest::Approx(sum).epsilon(1e-5));
  }
  CHECK(seen == nodes);
  for (const PlanShape& s : plan_shapes(*after)) CHECK(s.measured);
}

}  // namespace

TEST_CASE("plan shapes: every node's rebuilt key is the one the planner priced it under") {
  check_round_trip(test::tiny_model(), test::shipped_profile("h100-sxm-80gb"));
  check_round_trip(test::tiny_model(), test::shipped_profile("cpu"));
  check_round_trip(test::tiny_model(), test::shipped_profile("2x-h100-sxm-80gb"));  // collectives, expert split
  CompileOptions f32;
  f32.kv_dtype = DType::F32;  // attention keys carry the KV element bytes
  check_round_trip(test::tiny_model(), test::shipped_profile("h100-sxm-80gb"), f32);
  check_round_trip(test::full_model(), test::shipped_profile("h200-141gb"));
}

TEST_CASE("plan shapes: pairs listed once, in first-use order, with their nodes and phases") {
  const LoadedPlan p = compiled(test::tiny_model(), test::shipped_profile("h100-sxm-80gb"));
  const auto shapes = plan_shapes(*p);
  uint32_t nodes = 0;
  for (const plan::Phase* ph : *p->phases()) nodes += ph->nodes()->size();
  uint32_t listed = 0;
  std::map<std::pair<std::string, std::string>, int> seen;
  for (const PlanShape& s : shapes) {
    listed += s.nodes;
    CHECK(++seen[{s.kernel, s.shape}] == 1);
    CHECK(s.predicted_us > 0);
    CHECK(!s.phases.empty());
  }
  CHECK(listed == nodes);
  // The first node of the first phase comes first.
  const plan::Node* first = p->phases()->Get(0)->nodes()->Get(0);
  CHECK(shapes[0].kernel == p.kernel_id(*first));
  CHECK(shapes[0].shape == node_shape_key(*p, *first));
  // A decode matvec of the tiny model: the key names its weight type and sizes.
  bool decode_matvec = false;
  for (const PlanShape& s : shapes)
    if (s.phases.find("decode") != std::string::npos && s.shape.starts_with("matmul t=1 m=")) decode_matvec = true;
  CHECK(decode_matvec);
}
