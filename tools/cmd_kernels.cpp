// `flashplan kernels [--json]`: every registered kernel variant (ops/<family>/registry.cpp)
// with the op it serves, its dtypes, compute capability, token range and whether it can
// live in a CUDA graph, whether it can overlap the previous kernel (programmatic dependent
// launch, from which compute capability), and whether this build implements it (the planner
// never picks one it does not): what `--override` and profile timings may name.
// `flashplan kernels --plan PLAN`: instead, every (kernel, shape key) the plan runs, with
// its node count and predicted time: the pairs a device profile's `measured.kernels`
// entries name (schemas/device_profile.md).
#include <cstdio>
#include <nlohmann/json.hpp>

#include "ops/registry/kernel_registry.h"
#include "planner/plan_io/plan_io.h"
#include "planner/plan_io/plan_shape.h"
#include "tools/command.h"

namespace {

int list_plan_shapes(const std::string& path, bool json) {
  const fp::LoadedPlan lp = fp::load_plan(path);
  const auto shapes = fp::plan_shapes(*lp);
  if (json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& s : shapes)
      arr.push_back({{"kernel", s.kernel}, {"shape", s.shape}, {"nodes", s.nodes}, {"phases", s.phases},
                     {"predicted_us", s.predicted_us}, {"measured", s.measured}});
    std::printf("%s\n", arr.dump(1).c_str());
    return 0;
  }
  uint32_t nodes = 0;
  for (const auto& s : shapes) nodes += s.nodes;
  std::printf("%s: %zu (kernel, shape key) pairs over %u nodes; times predicted at context %llu\n", path.c_str(),
              shapes.size(), nodes, (unsigned long long)lp->provenance()->options()->cost_context());
  std::printf("%-36s %-58s %6s %10s  %s\n", "kernel", "shape key", "nodes", "us", "phases");
  for (const auto& s : shapes)
    std::printf("%-36s %-58s %6u %10.3f%s %s\n", s.kernel.c_str(), s.shape.c_str(), s.nodes, s.predicted_us,
                s.measured ? "m" : " ", s.phases.c_str());
  std::printf("us: the plan's time for one node (m: measured, from the profile's measured.kernels; else the cost "
              "model).\nA device profile's measured.kernels entry {kernel, shape, us} replaces the cost model for "
              "every node with that kernel and shape key.\n");
  return 0;
}

}  // namespace

FP_COMMAND("kernels", "List the registered kernel variants (ids for --override and measured timings)", [](CLI::App& app) {
  auto json = std::make_shared<bool>(false);
  auto plan = std::make_shared<std::string>();
  app.add_flag("--json", *json, "Print a JSON array");
  app.add_option("--plan", *plan, "List the (kernel, shape key) pairs this plan runs instead (measured.kernels names them)");
  return [json, plan]() {
    if (!plan->empty()) return list_plan_shapes(*plan, *json);
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& k : fp::kernel_registry()) {
      std::string dtypes = k.any_dequant ? "any dequantisable" : k.dtypes.empty() ? "any" : "";
      for (size_t i = 0; i < k.dtypes.size(); ++i) dtypes += (i ? "," : "") + std::string(fp::dtype_name(k.dtypes[i]));
      const std::string tokens =
          std::to_string(k.min_tokens) + (k.max_tokens == UINT32_MAX ? "+" : ".." + std::to_string(k.max_tokens));
      if (*json) {
        arr.push_back({{"id", k.id}, {"op", fp::op_kind_name(k.op)}, {"backend", fp::backend_name(k.backend)},
                       {"min_cc", k.min_cc}, {"min_tokens", k.min_tokens},
                       {"max_tokens", k.max_tokens == UINT32_MAX ? nlohmann::json(nullptr) : nlohmann::json(k.max_tokens)},
                       {"dtypes", dtypes}, {"capturable", k.capturable}, {"overlap_min_cc", k.overlap_min_cc},
                       {"implemented", k.implemented},
                       {"summary", k.summary}});
      } else {
        std::printf("%-38s %-16s cc>=%-4.1f tokens %-7s %-3s %-3s %-3s %-26s %s\n", k.id.c_str(),
                    fp::op_kind_name(k.op), k.min_cc / 10.0, tokens.c_str(), k.capturable ? "" : "(H)",
                    k.overlap_min_cc ? "(P)" : "", k.implemented ? "" : "(N)", dtypes.c_str(), k.summary.c_str());
      }
    }
    if (*json) std::printf("%s\n", arr.dump(1).c_str());
    else
      std::printf("(H): needs the host between launches, runs outside CUDA graphs\n"
                  "(P): may start while the previous kernel finishes (programmatic dependent launch, compute "
                  "capability 9.0+; the plan's overlap_prev)\n"
                  "(N): registered ahead of its kernel: not implemented in this build, never planned\n");
    return 0;
  };
});
