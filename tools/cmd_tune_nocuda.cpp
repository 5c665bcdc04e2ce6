// `flashplan tune` in a build without CUDA: the command exists so that asking for it says
// why it cannot run. tools/cmd_tune_cuda.cpp is the real command.
#ifndef FLASHPLAN_HAVE_CUDA
#include <memory>
#include <string>

#include "ops/core/error.h"
#include "planner/plan_io/plan_io.h"
#include "planner/profile/tune_targets.h"
#include "tools/command.h"

FP_COMMAND("tune", "Time every candidate kernel of a plan's product choices on this GPU (needs a CUDA build)",
           [](CLI::App& app) {
  auto plan = std::make_shared<std::string>();
  app.add_option("--plan", *plan, "The plan whose choices to time");
  app.allow_extras();
  return [plan]() -> int {
    // A plan that tune would refuse anywhere is refused the same way here.
    if (!plan->empty()) fp::tune_targets(*fp::load_plan(*plan), *plan);
    fp::fail("tune: this flashplan was built without CUDA; build with a CUDA toolkit (-DFLASHPLAN_CUDA=ON) on the GPU "
             "machine");
  };
});
#endif
