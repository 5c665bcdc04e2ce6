// What a runtime takes from a compiled plan before it runs it, CUDA-free so that the CPU
// build checks the same rules: the settings the plan fixes (numerics, max context,
// prefill buckets, MTP depth), whether the plan is for this model and this device, the
// node-by-node comparison of the plan's phases with the op graph the CPU executor
// builds in-process, and which phase a step of n tokens runs.
//
// Which device a plan is for: a plan compiled for the cpu backend runs on the CPU
// reference executor (any cpu profile; the CPU has nothing further to match). A plan
// for the cuda backend runs on a GPU when either
//   - the plan's device name is the name `flashplan probe` gives this GPU
//     (profile_name_for: "NVIDIA H200" -> "nvidia-h200"), or
//   - the plan's device has the GPU's compute capability and SM count and a total
//     memory within 3% of the GPU's (how probe matches a shipped datasheet profile such
//     as plans/devices/h200-141gb.yaml to a GPU).
// The compute capability must be equal in both cases. Everything else is refused with
// both sides named. A plan for N GPUs runs on the first N visible GPUs, device i of the
// plan on GPU i, each matched as above (the multi-device engine, runtime/cuda/multi_device.h).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ops/numerics/mode.h"
#include "ops/registry/kernel_registry.h"
#include "planner/graph/op_graph.h"
#include "planner/plan_io/plan_io.h"

namespace fp {

struct PlanSettings {
  Backend backend = Backend::Cpu;
  std::string device;                    // the profile name the plan was compiled for
  Numerics numerics = Numerics::official;
  uint64_t max_context = 0;
  std::vector<uint32_t> prefill_buckets;  // ascending upper bounds
  uint32_t max_step = 1;                  // the largest bucket: the prefill chunk
  uint32_t mtp_depth = 0;                 // 0 when the plan has no MTP phases
};
PlanSettings plan_settings(const LoadedPlan& p);

// Refuses engine options the plan contradicts (numerics, max context, a prefill chunk
// beyond its largest bucket), naming the plan and both values. Both executors call it.
void check_options_against_plan(const LoadedPlan& p, Numerics numerics, int64_t max_context, int64_t max_step);

// The op-graph options the plan was compiled with (build_op_graph of the same model
// with these gives the plan's phases).
GraphOptions plan_graph_options(const LoadedPlan& p);

struct GpuIdentity {
  std::string name;  // as the driver reports it
  uint32_t cc_major = 0, cc_minor = 0, sm_count = 0;
  uint64_t total_bytes = 0;
};
bool plan_device_is(const plan::Device& d, const GpuIdentity& g);

// Refuse `p` for another model / MTP file (check_plan_matches) or another device.
void check_plan_for_cpu(const LoadedPlan& p, const gguf::File& model, const gguf::File* mtp);
void check_plan_for_gpu(const LoadedPlan& p, const gguf::File& model, const gguf::File* mtp, const GpuIdentity& g);
// The same for every GPU of the plan: gpus[i] is the GPU that runs the plan's device i
// (more may be listed; fewer than the plan's count is refused).
void check_plan_for_gpus(const LoadedPlan& p, const gguf::File& model, const gguf::File* mtp,
                         const std::vector<GpuIdentity>& gpus);

// The first difference between the plan's phases and buffers and `g` ("" when they are
// the same node for node): which phase, which node, which field, both values.
std::string first_graph_difference(const LoadedPlan& p, const OpGraph& g);

// This build's op graph of `m` with the plan's options, refused (naming the plan and the
// first difference) unless the plan's phases are that graph node for node. Both engines
// call it at load; the CUDA executor then checks its own walk against the plan's nodes.
OpGraph plan_op_graph(const LoadedPlan& p, const Model& m);

// The phase a trunk step of n tokens runs: decode for one token, else the prefill
// bucket holding n; nullptr when no phase covers n.
const plan::Phase* phase_for_step(const LoadedPlan& p, uint32_t n);

}  // namespace fp
