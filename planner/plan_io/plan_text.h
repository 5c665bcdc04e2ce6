// A plan as text for people (`flashplan inspect PLAN`): provenance, memory budget,
// placement (host-mapped tensors named), KV cache, predicted step time per phase, and
// per phase the nodes in order with their kernels and the alternatives considered.
#pragma once
#include <string>

#include "planner/plan_io/plan_io.h"

namespace fp {

std::string plan_to_text(const LoadedPlan& p);

}  // namespace fp
