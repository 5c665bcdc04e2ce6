// What `flashplan tune` measures on a GPU: the products of a plan where the planner chose
// among several valid kernels (matmul and grouped_matmul nodes: a matvec with quantised or
// f32 activations, or dequantise + cuBLAS). Timing every candidate on the device and
// filing them all under the node's shape key makes the choice the device's, not the cost
// model's; `flashplan calibrate` (calibrate.h) leaves exactly these nodes out because it
// sees only the chosen kernel. CUDA-free: the plan is read here, the timing is
// tools/cmd_tune_cuda.cpp's.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ops/quant/types.h"
#include "planner/graph/op_kind.h"
#include "schemas/plan_generated.h"

namespace fp {

struct TuneTarget {
  OpKind op = OpKind::matmul;     // matmul or grouped_matmul
  std::string shape;              // the nodes' shape key (plan_shape.h)
  uint32_t tokens = 1;
  DType type = DType::F32;        // weight dtype
  int64_t rows = 0, cols = 0;     // the weight matrix (all groups' rows)
  int64_t groups = 1;             // grouped_matmul: row blocks, each reading its own cols of x
  bool paired = false;            // two weights of one type and shape on one x
  std::vector<std::string> kernels;  // the valid candidates, in the plan's order
  uint32_t nodes = 0;             // plan nodes with this key
};

// Every shape key of the plan's matmul and grouped_matmul nodes (on one device, or
// replicated on several) with at least two valid kernels, in first-use order. A plan for
// another backend than CUDA is refused (its kernels are not timed on a GPU); name is the
// plan's file, for the message.
std::vector<TuneTarget> tune_targets(const plan::Plan& p, const std::string& name);

}  // namespace fp
