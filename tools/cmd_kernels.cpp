// `flashplan kernels [--json]`: every registered kernel variant (ops/<family>/registry.cpp)
// with the op it serves, its dtypes, compute capability, token range and whether it can
// live in a CUDA graph, whether it can overlap the previous kernel (programmatic dependent
// launch, from which compute capability), and whether this build implements it (the planner
// never picks one it does not): what `--override` and profile timings may name.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "ops/registry/kernel_registry.h"
#include "tools/command.h"

FP_COMMAND("kernels", "List the registered kernel variants (ids for --override and measured timings)", [](CLI::App& app) {
  auto json = std::make_shared<bool>(false);
  app.add_flag("--json", *json, "Print a JSON array");
  return [json]() {
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
