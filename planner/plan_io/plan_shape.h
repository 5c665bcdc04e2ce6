// The shape key of a plan node (KernelShape::key(), ops/registry/kernel_registry.h),
// rebuilt from what the plan stores. Device-profile `measured.kernels` timings are filed
// under (kernel id, shape key); this is how a timing measured while running a plan finds
// its way back to the nodes the planner will price with it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "schemas/plan_generated.h"

namespace fp {

// The key the planner priced node `n` of plan `p` under when it chose the node's kernel.
std::string node_shape_key(const plan::Plan& p, const plan::Node& n);

// The ids of the kernels the planner found valid for node `n` (its candidates without a
// note), in the plan's order: more than one means the plan chose among them.
std::vector<std::string> valid_kernels(const plan::Plan& p, const plan::Node& n);

// One (kernel, shape key) a plan runs: what a `measured.kernels` entry names.
struct PlanShape {
  std::string kernel, shape;
  uint32_t nodes = 0;         // nodes of every phase that run it
  std::string phases;         // the phases they are in, comma-separated, plan order
  double predicted_us = 0;    // the plan's time for one such node (cost model or measured)
  bool measured = false;      // predicted_us came from the profile's measured timings
};

// Every (kernel, shape key) of the plan, in first-use order (phases in plan order).
std::vector<PlanShape> plan_shapes(const plan::Plan& p);

}  // namespace fp
