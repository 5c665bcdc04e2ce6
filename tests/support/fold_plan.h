// A multi-GPU plan folded onto one GPU, for tests of the multi-GPU path on a machine with
// one: device 0 holds every weight (its outer slices widened to the whole tensors), the
// nodes stay the multi-GPU plan's (expert_split moe, the all-reduce of its slot outputs,
// moe_combine), so one NCCL rank runs the whole multi-GPU step.
#pragma once
#include <memory>

#include "ops/core/error.h"
#include "planner/plan_io/plan_io.h"

namespace fp::test {

inline std::shared_ptr<const LoadedPlan> fold_onto_one_gpu(const LoadedPlan& multi) {
  std::unique_ptr<plan::PlanT> t(multi.root->UnPack());
  t->device->gpus = 1;
  for (auto& w : t->weights) {
    if (w->slices.empty()) continue;
    uint64_t extent = 0;
    for (const auto& sl : w->slices) extent += sl->count;
    std::unique_ptr<plan::WeightSliceT> keep;
    for (auto& sl : w->slices)
      if (sl->device == 0) keep = std::move(sl);
    if (!keep) fail("fold_onto_one_gpu: ", w->name, " has no slice on device 0");
    if (keep->axis == plan::SliceAxis::outer) {
      keep->first = 0;
      keep->count = extent;
      keep->bytes = w->bytes;
      // Widened, the slice no longer fits the room the plan gave it in a packed chunk
      // (it would overlap its neighbours): it gets a chunk of its own.
      auto c = std::make_unique<plan::ChunkT>();
      c->id = uint32_t(t->chunks.size());
      c->placement = plan::Placement::device_chunk;
      c->device = 0;
      c->alignment = 2ull << 20;
      c->bytes = (w->bytes + c->alignment - 1) / c->alignment * c->alignment;
      keep->chunk = c->id;
      keep->chunk_offset = 0;
      t->chunks.push_back(std::move(c));
    }
    w->slices.clear();
    w->slices.push_back(std::move(keep));
  }
  return std::make_shared<LoadedPlan>(verify_plan(serialize_plan(*t), "folded.fplan"));
}

}  // namespace fp::test
