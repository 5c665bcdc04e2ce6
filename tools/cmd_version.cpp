// `flashplan version`: what this binary is and which backends it was built with.
#include <cstdio>

#include "tools/build_commit.h"
#include "tools/command.h"

FP_COMMAND("version", "Print the version, commit and built-in backends", [](CLI::App&) {
  return []() {
#ifdef FLASHPLAN_HAVE_CUDA
    const char* cuda = "yes";
#else
    const char* cuda = "no";
#endif
    std::printf("flashplan %s (%s), backends: cpu, cuda=%s\n", FLASHPLAN_VERSION, fp::build_commit(), cuda);
    return 0;
  };
});
