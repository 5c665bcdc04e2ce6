// Device-profile kernel timings from a run: `flashplan profile --plan PLAN -o nodes.csv`
// times every node of one decode step and one prefill chunk on the GPU; this turns the
// nodes it can trust into `measured.kernels` entries (schemas/device_profile.md), filed
// under each node's kernel id and shape key (planner/plan_io/plan_shape.h), the median
// where several nodes share one.
//
// What it leaves to the cost model, and why:
//   - the decode step, unless the profile was timed inside the graph (--in-graph): the
//     profile otherwise runs it eagerly with an event before each node, and at
//     one token a step the host launches kernels more slowly than the GPU runs them, so a
//     node's time there is mostly the host's (an H200, 2026-12-07: 14.1 ms by events, 9.6 ms
//     replayed from the graph);
//   - nodes whose key names KV rows (attention, the indexer): their time depends on the
//     context, and the key's rows are the plan's cost context's, not the profiled chunk's;
//   - nodes where the plan had another valid kernel: a measured time set against the cost
//     model's estimates of the others would decide the choice by who was measured, not by
//     who is faster;
//   - short nodes (under kCalibrateMinUs) and one-token nodes: an eagerly launched kernel
//     pays a few µs more than the same kernel replayed from a graph, which is how plans run;
//     under 50 µs that is more than a few percent (and one-token keys are the decode
//     step's too).
// The prefill chunk must be the plan's largest bucket (the profile's default chunk): its
// node shapes are that phase's. The CSV's header names the chunk ("chunk N") since
// 2026-12-07; an older CSV is taken to be at the default.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "planner/plan_io/plan_io.h"

namespace fp {

// Profiled nodes shorter than this are left to the cost model (see above).
inline constexpr double kCalibrateMinUs = 50.0;
// The same for a profile timed inside the step's graph (`flashplan profile --in-graph`,
// "timing graph" in its header): there the decode step's nodes are used too, and what a
// node pays beyond its kernels is the event record node before it. Chosen before any such
// run was seen (2026-12-07): an event node is taken to cost under 1 µs, so nodes from
// 10 µs are off by under 10 %.
inline constexpr double kCalibrateMinGraphUs = 10.0;

struct CalibratedKernel {
  std::string kernel, shape;
  double us = 0;       // median over the nodes
  uint32_t nodes = 0;  // profiled nodes behind it
};

struct Calibration {
  std::string source;  // the CSV's first comment line (commit, GPU, model, context), or ""
  std::string phase;   // the plan phase the prefill rows were matched to
  std::vector<CalibratedKernel> kernels;  // in first-node order
  bool graph = false;  // the profile was timed inside the step's graph ("timing graph")
  uint32_t used = 0, decode = 0, kv_rows = 0, alternatives = 0, short_nodes = 0;  // used; left out, by reason
};

// `csv` is the profile's CSV text, `name` what messages call it. Refuses a CSV that does not
// fit the plan (node count, op or weight of a node), naming the line and both sides.
Calibration calibrate_from_profile(const LoadedPlan& plan, const std::string& csv, const std::string& name);

// Timings as a profile's `measured:` section holding only a `kernels:` list, each comment
// line first (calibrate's and tune's output: a fragment to merge into a device profile).
std::string measured_kernels_yaml(const std::vector<CalibratedKernel>& kernels, const std::vector<std::string>& comments);

// The entries as measured_kernels_yaml, with comments naming the source and what was left out.
std::string calibration_yaml(const Calibration& c, const std::string& plan_name, const std::string& csv_name);

}  // namespace fp
