// `flashplan diff A B`: what differs between two plans by meaning, not by bytes:
// provenance, model, device and option fields; kernel choices per phase and node, folded
// over layers and phases ("decode: blk.2-42/2 attn_q_b: K1 -> K2"), and the same for how
// nodes are launched (overlap_prev: "pdl" or "plain"); weights that moved
// between device and host memory or devices; how nodes run across devices and the
// collectives of multi-GPU plans; graph segments; memory budget and predicted times.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "planner/plan_io/plan_io.h"

namespace fp {

struct PlanDiff {
  struct Field {
    std::string section, name, a, b;
  };
  struct KernelChange {
    std::vector<std::string> phases;
    std::string role;
    std::vector<int> layers;  // empty: a model-level node
    std::string from, to;
  };
  struct NodeSets {
    std::string phase;
    std::vector<std::string> only_a, only_b;
  };
  struct PlacementChange {
    std::string role;
    std::vector<int> layers;
    std::string from, to;
    double bytes = 0;
  };
  struct SegmentChange {
    std::string phase;
    uint32_t a_graphs = 0, a_host = 0, b_graphs = 0, b_host = 0;
  };
  struct Delta {
    std::string name;
    double a = 0, b = 0;
  };
  // How nodes run across devices (multi-GPU plans), folded over phases and layers.
  struct ParallelChange {
    std::string role;
    std::vector<int> layers;
    std::string from, to;
  };
  struct Collectives {
    std::string phase;
    uint32_t a_reduce = 0, a_gather = 0, b_reduce = 0, b_gather = 0;
    double a_us = 0, b_us = 0, a_bytes = 0, b_bytes = 0;
  };

  std::vector<Field> fields;
  std::vector<std::string> phases_only_a, phases_only_b;
  std::vector<NodeSets> node_sets;
  std::vector<KernelChange> kernels;
  std::vector<KernelChange> launches;  // overlap_prev per node: from / to "pdl" or "plain"
  std::vector<PlacementChange> placements;
  uint32_t weights_only_a = 0, weights_only_b = 0;
  std::vector<SegmentChange> segments;
  std::vector<ParallelChange> parallel;
  std::vector<Collectives> collectives;
  std::vector<Delta> memory;  // bytes; only the entries that differ
  std::vector<Delta> times;   // predicted us per step, per phase in both; only those that differ

  bool equal() const {
    return fields.empty() && phases_only_a.empty() && phases_only_b.empty() && node_sets.empty() && kernels.empty() &&
           launches.empty() && placements.empty() && parallel.empty() && collectives.empty() && weights_only_a == 0 && weights_only_b == 0 && segments.empty() && memory.empty() &&
           times.empty();
  }
};

PlanDiff diff_plans(const LoadedPlan& a, const LoadedPlan& b);
std::string diff_to_text(const PlanDiff& d, const std::string& a_name, const std::string& b_name);
nlohmann::json diff_to_json(const PlanDiff& d, const std::string& a_name, const std::string& b_name);

}  // namespace fp
