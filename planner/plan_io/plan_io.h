// Reading and writing plan files. A plan is never trusted: loading checks the size, the
// "FPLN" identifier, the FlatBuffers verifier, the format version, the internal
// references (kernel, weight, buffer, note and node indices) and that overlap_prev marks
// only nodes whose kernel in this build can overlap the previous one on the plan's
// device (ops/registry overlap_rejection), and refuses anything else
// with a message naming the file and what was wrong. The runtime then checks the plan
// against the GGUF and the device it is about to use (check_plan_matches).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "planner/gguf/gguf.h"
#include "schemas/plan_generated.h"

namespace fp {

// The plan format this build reads and writes; any other is refused. 2: multi-GPU
// plans (device per node, weight slices, collectives, per-device memory).
inline constexpr uint32_t kPlanFormatVersion = 2;

// The plan as FlatBuffers bytes (identifier "FPLN"), checksum filled in. The checksum
// field of `p` is ignored.
std::vector<uint8_t> serialize_plan(const plan::PlanT& p);

// A verified plan: owns its bytes; `root` points into them.
struct LoadedPlan {
  std::string path;
  std::vector<uint8_t> bytes;
  const plan::Plan* root = nullptr;

  const plan::Plan& operator*() const { return *root; }
  const plan::Plan* operator->() const { return root; }
  // Id of the kernel a node runs.
  std::string kernel_id(const plan::Node& n) const;
};

inline constexpr uint64_t kMaxPlanBytes = 1ull << 30;

// Verifies bytes already in memory; `name` is what messages call them.
LoadedPlan verify_plan(std::vector<uint8_t> bytes, const std::string& name);
LoadedPlan load_plan(const std::string& path);

// True when the file starts like a plan (its identifier is "FPLN"), for dispatch.
bool looks_like_plan(const std::string& path);

// Writes atomically (a temporary file renamed into place).
void write_plan_file(const std::string& path, const std::vector<uint8_t>& bytes);

// Refuses to run `p` against another model file (fingerprint), another MTP file, or
// another device (profile name; compute capability when `device_cc` is not 0, as
// major * 10 + minor). Messages name both sides.
void check_plan_matches(const LoadedPlan& p, const gguf::File& model, const std::string& device_name,
                        uint32_t device_cc = 0, const gguf::File* mtp = nullptr);

}  // namespace fp
