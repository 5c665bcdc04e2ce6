// `flashplan diff A B [--json]`: compare two plans by meaning (planner/diff/plan_diff.h).
// Exit status like diff(1): 0 equal, 1 different, 2 trouble (a file cannot be loaded).
#include <cstdio>

#include "planner/diff/plan_diff.h"
#include "planner/plan_io/plan_io.h"
#include "tools/command.h"

namespace {

struct Args {
  std::string a, b;
  bool json = false;
};

int run(const Args& x) {
  const fp::LoadedPlan a = fp::load_plan(x.a);
  const fp::LoadedPlan b = fp::load_plan(x.b);
  const fp::PlanDiff d = fp::diff_plans(a, b);
  if (x.json) std::printf("%s\n", fp::diff_to_json(d, x.a, x.b).dump(1).c_str());
  else std::fputs(fp::diff_to_text(d, x.a, x.b).c_str(), stdout);
  return d.equal() ? 0 : 1;
}

}  // namespace

FP_COMMAND(
    "diff", "Compare two plans by meaning: kernels per layer and phase, placement, segments, memory, times",
    [](CLI::App& app) {
      auto x = std::make_shared<Args>();
      app.add_option("a", x->a, "First plan")->required();
      app.add_option("b", x->b, "Second plan")->required();
      app.add_flag("--json", x->json, "Print one JSON object");
      return [x]() { return run(*x); };
    },
    2);
