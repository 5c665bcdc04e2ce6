#include "planner/plan_io/plan_shape.h"

#include <map>
#include <utility>

#include "ops/quant/types.h"
#include "ops/registry/kernel_registry.h"

namespace fp {

std::string node_shape_key(const plan::Plan& p, const plan::Node& n) {
  KernelShape s;
  s.op = static_cast<OpKind>(n.op());
  s.tokens = n.tokens();
  if (const plan::Dims* d = n.dims()) {
    s.m = d->m();
    s.k = d->k();
    s.groups = d->groups();
    s.experts = d->experts();
    s.heads = d->heads();
    s.head_dim = d->head_dim();
    s.rows = d->rows();
  }
  // The planner prices attention with the bytes of a stored KV element (planner/graph
  // op_graph.cpp); no other op carries them in its key.
  if (s.op == OpKind::attention && p.provenance() && p.provenance()->options())
    s.kv_elem_bytes = traits(static_cast<DType>(p.provenance()->options()->kv_dtype())).bytes;
  s.link_bytes = n.link_bytes();
  if (n.weights() && p.weights())
    for (uint32_t w : *n.weights()) s.wtypes.push_back(static_cast<DType>(p.weights()->Get(w)->dtype()));
  return s.key();
}

std::vector<std::string> valid_kernels(const plan::Plan& p, const plan::Node& n) {
  std::vector<std::string> out;
  if (n.candidates())
    for (const plan::Candidate* c : *n.candidates())
      if (c->note() == 0) out.push_back(p.kernels()->Get(c->kernel())->id()->str());
  return out;
}

std::vector<PlanShape> plan_shapes(const plan::Plan& p) {
  std::vector<PlanShape> out;
  std::map<std::pair<std::string, std::string>, size_t> at;
  if (!p.phases()) return out;
  for (const plan::Phase* ph : *p.phases()) {
    if (!ph->nodes()) continue;
    const std::string phase = ph->name() ? ph->name()->str() : "";
    for (const plan::Node* n : *ph->nodes()) {
      std::string kernel = p.kernels()->Get(n->kernel())->id()->str();
      std::string shape = node_shape_key(p, *n);
      auto [it, fresh] = at.emplace(std::make_pair(kernel, shape), out.size());
      if (fresh) {
        PlanShape s;
        s.kernel = std::move(kernel);
        s.shape = std::move(shape);
        s.predicted_us = n->predicted_us();
        s.measured = n->choice() == plan::Choice::measured;
        out.push_back(std::move(s));
      }
      PlanShape& s = out[it->second];
      ++s.nodes;
      const bool listed = s.phases == phase || s.phases.ends_with("," + phase);
      if (!listed) s.phases += (s.phases.empty() ? "" : ",") + phase;
    }
  }
  return out;
}

}  // namespace fp
