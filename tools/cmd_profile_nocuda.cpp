// `flashplan profile` in a build without CUDA: the command exists so that asking for it
// says why it cannot run. tools/cmd_profile_cuda.cpp is the real command.
#ifndef FLASHPLAN_HAVE_CUDA
#include "ops/core/error.h"
#include "tools/command.h"

FP_COMMAND("profile", "Per-node GPU time of a decode step and a prefill chunk (needs a CUDA build)", [](CLI::App& app) {
  app.allow_extras();
  return []() -> int { fp::fail("profile: this flashplan was built without CUDA; it times CUDA kernels"); };
});
#endif
