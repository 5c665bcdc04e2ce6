// The op vocabulary of plan nodes (HELPERS.md "The op vocabulary"). The enum itself is
// defined beside the kernel registry in ops/registry/op_kind.h, because kernels register
// against op kinds and ops/ may not include planner/; include this header from the
// planner, the runtime and the executors.
#pragma once
#include "ops/registry/op_kind.h"
