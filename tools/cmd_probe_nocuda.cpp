// `flashplan probe` in a build without CUDA: the command exists so that asking for it
// says why it cannot run, instead of "unknown subcommand". tools/cmd_probe_cuda.cpp is
// the real command.
#ifndef FLASHPLAN_HAVE_CUDA
#include "ops/core/error.h"
#include "tools/command.h"

FP_COMMAND("probe", "Write this GPU's device profile YAML (needs a CUDA build)", [](CLI::App& app) {
  app.allow_extras();
  return []() -> int {
    fp::fail("probe: this flashplan was built without CUDA; build with a CUDA toolkit (-DFLASHPLAN_CUDA=ON) on the GPU "
             "machine, or take a profile from plans/devices/");
  };
});
#endif
