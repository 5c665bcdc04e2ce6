// flashplan calibrate (planner/profile/calibrate.h): which profiled nodes become measured
// kernel timings, their medians, the round trip through a device profile back into a plan,
// and refusals of a CSV that is not a profile of the plan.
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

#include "planner/graph/op_kind.h"
#include "planner/plan_io/plan_io.h"
#include "planner/plan_io/plan_shape.h"
#include "planner/profile/calibrate.h"
#include "plan_test_util.h"

using namespace fp;

namespace {

const plan::Phase& largest_prefill(const plan::Plan& p) {
  const plan::Phase* best = nullptr;
  for (const plan::Phase* ph : *p.phases())
    if (ph->kind() == plan::PhaseKind::prefill && (!best || ph->max_tokens() > best->max_tokens())) best = ph;
  REQUIRE(best);
  return *best;
}

const plan::Phase& decode_phase(const plan::Plan& p) {
  for (const plan::Phase* ph : *p.phases())
    if (ph->kind() == plan::PhaseKind::decode) return *ph;
  FAIL("no decode phase");
  throw 0;
}

// The CSV `flashplan profile -o` writes for this plan, with the prefill times `us(i)` (and
// the decode times `dec(i)`, 7 us by default); `header` ends the first line.
std::string profile_csv(const LoadedPlan& lp, const std::function<double(uint32_t)>& us,
                        const std::string& header = "",
                        const std::function<double(uint32_t)>& dec = [](uint32_t) { return 7.0; }) {
  const plan::Plan& p = *lp;
  std::ostringstream o;
  o << "# flashplan profile, test, NVIDIA H100, tiny, context 512" << header << "\n";
  o << "phase,node,op,layer,weight,type,rows,cols,experts,us,dense_weight_bytes\n";
  auto rows = [&](const plan::Phase& ph, const char* phase, const std::function<double(uint32_t)>& t) {
    for (uint32_t i = 0; i < ph.nodes()->size(); ++i) {
      const plan::Node& n = *ph.nodes()->Get(i);
      const std::string w =
          n.weights() && n.weights()->size() ? p.weights()->Get(n.weights()->Get(0))->name()->str() : "";
      o << phase << ',' << i << ',' << op_kind_name(static_cast<OpKind>(n.op())) << ',' << n.layer() << ',' << w
        << ",F32,0,0,0," << t(i) << ",0\n";
    }
  };
  rows(decode_phase(p), "decode", dec);
  rows(largest_prefill(p), "prefill", us);
  return o.str();
}

LoadedPlan tiny_plan(const DeviceProfile& prof) {
  return verify_plan(test::compile_bytes(test::tiny_model(), prof), "tiny.fplan");
}

}  // namespace

TEST_CASE("calibrate: long, single-kernel, context-free prefill nodes become medians per kernel and key") {
  const LoadedPlan lp = tiny_plan(test::shipped_profile("h100-sxm-80gb"));
  const plan::Phase& pre = largest_prefill(*lp);
  // Every node 100 + (i mod 5) us: keys shared by several nodes get the median of theirs.
  const Calibration c = calibrate_from_profile(lp, profile_csv(lp, [](uint32_t i) { return 100.0 + i % 5; }), "n.csv");
  CHECK(c.phase == pre.name()->str());
  CHECK(c.source == "flashplan profile, test, NVIDIA H100, tiny, context 512");
  CHECK(c.decode == decode_phase(*lp).nodes()->size());
  CHECK(c.used + c.kv_rows + c.alternatives + c.short_nodes == pre.nodes()->size());
  CHECK(c.used > 0);
  CHECK(c.kv_rows > 0);       // attention and the indexer
  CHECK(c.alternatives > 0);  // the matmuls (matvec, GEMM paths)

  std::map<std::pair<std::string, std::string>, std::vector<double>> want;
  for (uint32_t i = 0; i < pre.nodes()->size(); ++i) {
    const plan::Node& n = *pre.nodes()->Get(i);
    int valid = 0;
    for (const plan::Candidate* k : *n.candidates()) valid += k->note() == 0;
    if (n.dims()->rows() != 0 || valid > 1 || n.tokens() <= 1) continue;
    want[{lp.kernel_id(n), node_shape_key(*lp, n)}].push_back(100.0 + i % 5);
  }
  REQUIRE(c.kernels.size() == want.size());
  for (const CalibratedKernel& k : c.kernels) {
    CAPTURE(k.shape);
    auto v = want.at({k.kernel, k.shape});
    std::sort(v.begin(), v.end());
    const double med = v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
    CHECK(k.us == doctest::Approx(med));
    CHECK(k.nodes == v.size());
    CHECK(k.shape.find(" rows=") == std::string::npos);
  }
}

TEST_CASE("calibrate: the fragment goes into a device profile and back into the plan as measured times") {
  const DeviceProfile h100 = test::shipped_profile("h100-sxm-80gb");
  const LoadedPlan lp = tiny_plan(h100);
  const Calibration c = calibrate_from_profile(lp, profile_csv(lp, [](uint32_t i) { return 60.0 + i; }), "n.csv");
  REQUIRE(!c.kernels.empty());
  const std::string yaml = calibration_yaml(c, "tiny.fplan", "n.csv");
  CHECK(yaml.rfind("measured:\n", 0) == 0);
  CHECK(yaml.find("n.csv (flashplan profile, test") != std::string::npos);
  // Merged under the shipped profile's own measured section.
  std::ifstream f(std::string(FLASHPLAN_SOURCE_DIR) + "/plans/devices/h100-sxm-80gb.yaml");
  std::stringstream text;
  text << f.rdbuf();
  std::string merged = text.str();
  // Without the profile's own timings (its last lines), which the fragment replaces here.
  const size_t own = merged.find("\n  # Kernel timings");
  if (own != std::string::npos) merged.resize(own + 1);
  const size_t at = merged.find("\nmeasured:\n");
  REQUIRE(at != std::string::npos);
  merged.insert(at + 11, yaml.substr(10));
  const DeviceProfile measured = parse_device_profile(merged, "merged.yaml");
  REQUIRE(measured.measured.size() == c.kernels.size());
  const LoadedPlan again = tiny_plan(measured);
  const plan::Phase& pre = largest_prefill(*again);
  std::map<std::pair<std::string, std::string>, double> times;
  for (const CalibratedKernel& k : c.kernels) times[{k.kernel, k.shape}] = k.us;
  uint32_t marked = 0;
  for (const plan::Node* n : *pre.nodes()) {
    const auto it = times.find({again.kernel_id(*n), node_shape_key(*again, *n)});
    if (it == times.end()) continue;
    CHECK(n->choice() == plan::Choice::measured);
    CHECK(n->predicted_us() == doctest::Approx(it->second));
    ++marked;
  }
  CHECK(marked == c.used);
}

TEST_CASE("calibrate: keys whose median is short are left to the cost model") {
  const LoadedPlan lp = tiny_plan(test::shipped_profile("h100-sxm-80gb"));
  const Calibration all = calibrate_from_profile(lp, profile_csv(lp, [](uint32_t) { return 80.0; }), "n.csv");
  const Calibration none = calibrate_from_profile(lp, profile_csv(lp, [](uint32_t) { return 20.0; }), "n.csv");
  CHECK(!all.kernels.empty());
  CHECK(none.kernels.empty());
  CHECK(none.used == 0);
  CHECK(none.short_nodes == all.short_nodes + all.used);
}

TEST_CASE("calibrate: a CSV that is not a profile of this plan is refused, naming the line") {
  const LoadedPlan lp = tiny_plan(test::shipped_profile("h100-sxm-80gb"));
  const std::string good = profile_csv(lp, [](uint32_t) { return 100.0; });
  auto err = [&](const std::string& csv) { return test::error_of([&] { calibrate_from_profile(lp, csv, "n.csv"); }); };

  // One prefill row fewer: another bucket's or another plan's profile.
  std::string e = err(good.substr(0, good.rfind('\n', good.size() - 2) + 1));
  CHECK(e.find("n.csv") != std::string::npos);
  CHECK(e.find("prefill rows") != std::string::npos);
  CHECK(e.find("tiny.fplan") != std::string::npos);

  // A node's op changed.
  std::string swapped = good;
  const size_t at = swapped.find("prefill,0,embed,");
  REQUIRE(at != std::string::npos);
  swapped.replace(at, 16, "prefill,0,hc_pre,");
  e = err(swapped);
  CHECK(e.find("n.csv: line ") != std::string::npos);
  CHECK(e.find("is hc_pre") != std::string::npos);
  CHECK(e.find("= embed") != std::string::npos);

  // A bad time, an unknown phase, a missing column, no header.
  std::string bad = good;
  bad.replace(bad.find(",100,0\n", bad.find("prefill,3,")), 7, ",-1,0\n");
  CHECK(err(bad).find("us '-1'") != std::string::npos);
  std::string phase = good;
  phase.replace(phase.find("decode,0,"), 7, "decade,");
  CHECK(err(phase).find("phase 'decade'") != std::string::npos);
  std::string header = good;
  header.replace(header.find(",us,"), 4, ",ms,");
  CHECK(err(header).find("no 'us' column") != std::string::npos);
  CHECK(err("# only a comment\n").find("no header line") != std::string::npos);
  CHECK(err("#\n# \n").find("no header line") != std::string::npos);  // empty comments are no source

  // A profile that names a prefill chunk other than the bucket the rows are matched to.
  std::string chunk = good;
  chunk.replace(chunk.find("context 512"), 11, "context 512, chunk 100");
  e = err(chunk);
  CHECK(e.find("chunk is 100 tokens") != std::string::npos);
  CHECK(e.find("--chunk") != std::string::npos);
  std::string right = good;
  right.replace(right.find("context 512"), 11,
                "context 512, chunk " + std::to_string(largest_prefill(*lp).max_tokens()));
  CHECK(!calibrate_from_profile(lp, right, "n.csv").kernels.empty());
  std::string cells = good;
  cells.replace(cells.find("\ndecode,0,"), 1, "\nx,");
  CHECK(err(cells).find("cells, expected") != std::string::npos);
}

TEST_CASE("calibrate: a profile timed inside the graph also gives the decode step's single-kernel nodes") {
  const LoadedPlan lp = tiny_plan(test::shipped_profile("h100-sxm-80gb"));
  const plan::Phase& dec = decode_phase(*lp);
  const std::string chunk = ", chunk " + std::to_string(largest_prefill(*lp).max_tokens());
  // Eager: the decode rows are counted and left out, whatever their times.
  const Calibration eager = calibrate_from_profile(
      lp, profile_csv(lp, [](uint32_t) { return 100.0; }, chunk + ", timing eager", [](uint32_t) { return 30.0; }),
      "n.csv");
  CHECK(!eager.graph);
  CHECK(eager.decode == dec.nodes()->size());
  // In the graph: decode nodes of one valid kernel and no KV rows become timings from 10 us.
  const Calibration graph = calibrate_from_profile(
      lp, profile_csv(lp, [](uint32_t) { return 100.0; }, chunk + ", timing graph", [](uint32_t) { return 30.0; }),
      "n.csv");
  CHECK(graph.graph);
  CHECK(graph.decode == 0);
  CHECK(graph.phase.find("decode and ") == 0);
  bool one_token = false;
  for (const CalibratedKernel& k : graph.kernels) one_token |= k.shape.find(" t=1 ") != std::string::npos;
  CHECK(one_token);
  CHECK(graph.used > eager.used);
  CHECK(graph.used + graph.kv_rows + graph.alternatives + graph.short_nodes ==
        dec.nodes()->size() + largest_prefill(*lp).nodes()->size());
  // Short graph-timed nodes stay with the cost model.
  const Calibration short_dec = calibrate_from_profile(
      lp, profile_csv(lp, [](uint32_t) { return 100.0; }, chunk + ", timing graph", [](uint32_t) { return 5.0; }),
      "n.csv");
  std::set<std::string> prefill_keys;
  for (const plan::Node* n : *largest_prefill(*lp).nodes()) prefill_keys.insert(node_shape_key(*lp, *n));
  for (const CalibratedKernel& k : short_dec.kernels) CHECK(prefill_keys.count(k.shape));  // the head's 1-token nodes
  CHECK(short_dec.used < graph.used);
  // A graph-timed CSV whose decode rows are not the plan's decode step is refused.
  std::string bad = profile_csv(lp, [](uint32_t) { return 100.0; }, chunk + ", timing graph");
  bad.erase(bad.find("decode,0,"), bad.find("decode,1,") - bad.find("decode,0,"));
  CHECK(test::error_of([&] { calibrate_from_profile(lp, bad, "n.csv"); }).find("decode rows") != std::string::npos);
}
