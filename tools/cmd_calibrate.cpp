// `flashplan calibrate PLAN NODES.csv [-o FRAGMENT.yaml]`: the `measured.kernels` timings
// that a `flashplan profile --plan PLAN -o NODES.csv` run supports (planner/profile/calibrate.h
// says which nodes and why), as a profile fragment to merge under the device profile's
// `measured:` section. No GPU needed: it reads the plan and the CSV.
#include <cstdio>
#include <fstream>

#include "ops/core/error.h"
#include "ops/core/text_file.h"
#include "planner/plan_io/plan_io.h"
#include "planner/profile/calibrate.h"
#include "tools/command.h"

FP_COMMAND("calibrate", "Turn a profiled run of a plan into measured kernel timings for its device profile",
           [](CLI::App& app) {
  struct Opts {
    std::string plan, csv, out;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("plan", o->plan, "The plan the profile ran (flashplan profile --plan)")->required();
  app.add_option("csv", o->csv, "The profile's node CSV (flashplan profile -o)")->required();
  app.add_option("-o,--output", o->out, "Write the fragment here (default: standard output)");
  return [o]() -> int {
    const fp::LoadedPlan plan = fp::load_plan(o->plan);
    // A full-model profile is ~2500 rows of ~100 bytes; 64 MiB bounds a wrong path.
    const std::string text = fp::read_text_file(o->csv, "profile CSV", 64u << 20);
    const fp::Calibration c = fp::calibrate_from_profile(plan, text, o->csv);
    const std::string yaml = fp::calibration_yaml(c, o->plan, o->csv);
    if (o->out.empty()) {
      std::fputs(yaml.c_str(), stdout);
      return 0;
    }
    std::ofstream f(o->out, std::ios::binary | std::ios::trunc);
    if (!f || !(f << yaml) || !f.flush()) fp::fail(o->out, ": cannot write -o");
    std::printf("wrote %s: %zu timings from %u nodes (%s%s)\n", o->out.c_str(), c.kernels.size(), c.used, c.phase.c_str(),
                c.graph ? " and decode, timed in the graph" : ", timed eagerly");
    return 0;
  };
});
