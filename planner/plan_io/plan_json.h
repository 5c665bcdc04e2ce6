// A plan as JSON, every field (defaults included), printed by FlatBuffers' own text
// generator from the schema compiled into the binary, so the JSON can never lag the
// schema. Enums print as names ("matmul", "host_mapped", "Q8_0").
#pragma once
#include <string>

#include "planner/plan_io/plan_io.h"

namespace fp {

std::string plan_to_json(const LoadedPlan& p);

}  // namespace fp
