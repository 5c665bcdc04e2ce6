// `flashplan tune` in a build without CUDA: the command exists so that asking for it says
// why it cannot run. tools/cmd_tune_cuda.cpp is the real command.
#ifndef FLASHPLAN_HAVE_CUDA
#include "ops/core/error.h"
#include "tools/command.h"

FP_COMMAND("tune", "Time every candidate kernel of a plan's product choices on this GPU (needs a CUDA build)",
           [](CLI::App& app) {
  app.allow_extras();
  return []() -> int {
    fp::fail("tune: this flashplan was built without CUDA; build with a CUDA toolkit (-DFLASHPLAN_CUDA=ON) on the GPU "
             "machine");
  };
});
#endif
