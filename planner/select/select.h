// Kernel selection: for every node of every phase, the cheapest kernel that can run it
// on the target device, unless the profile measured something faster or an --override
// forces a choice. Every candidate considered is kept with its predicted time (or why it
// cannot run), so `inspect` can show the decision and `diff` can compare them.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "planner/graph/op_graph.h"
#include "planner/profile/device_profile.h"

namespace fp {

// `--override 'PATTERN=KERNEL'`: nodes whose name matches PATTERN use KERNEL.
struct KernelOverride {
  std::string pattern;
  std::string kernel;
};
// Parses "PATTERN=KERNEL" (the kernel must be registered); throws naming the argument.
KernelOverride parse_override(std::string_view arg);
// Glob over node names: '*' matches any run of characters (dots included), '?' one.
bool glob_match(std::string_view pattern, std::string_view name);

enum class ChoiceKind : uint8_t { cheapest = 0, measured = 1, forced = 2, only_valid = 3 };

struct CandidateResult {
  const KernelInfo* kernel = nullptr;
  double us = 0;          // 0 when it cannot run
  std::string rejection;  // "" when it can run
  bool measured = false;
};

struct NodeChoice {
  const KernelInfo* kernel = nullptr;
  KernelCost cost;        // of the chosen kernel (us replaced by the measured time if any)
  ChoiceKind choice = ChoiceKind::cheapest;
  int32_t override_index = -1;
  std::vector<CandidateResult> candidates;  // kernels of the device's backend for the op
};

struct PhaseSegment {
  uint32_t first = 0, count = 0;
  uint32_t stream = 0;
  bool graph = false;
};

struct PhaseSelection {
  std::vector<NodeChoice> nodes;
  std::vector<PhaseSegment> segments;
  double predicted_us = 0;
};

// Node shapes must already carry weight_bytes / host_weight_bytes from the placement.
std::vector<PhaseSelection> select_kernels(const OpGraph& g, const DeviceProfile& profile,
                                           const std::vector<KernelOverride>& overrides);

// Graph segments of one phase: maximal runs of graph-capturable kernels become one CUDA
// graph; a kernel that needs the host runs alone, outside any graph. CPU: one segment.
std::vector<PhaseSegment> segment_phase(const std::vector<NodeChoice>& nodes, Backend backend);

}  // namespace fp
