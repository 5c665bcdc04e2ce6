#include "planner/profile/tune_targets.h"

#include <map>

#include "ops/core/error.h"
#include "planner/plan_io/plan_shape.h"

namespace fp {

std::vector<TuneTarget> tune_targets(const plan::Plan& p, const std::string& name) {
  if (p.device()->backend() != plan::Backend::cuda)
    fail(name, ": a plan for backend ", plan::EnumNameBackend(p.device()->backend()), " (", p.device()->name()->str(),
         "); tune times CUDA kernels: compile a plan with this GPU's profile");
  std::vector<TuneTarget> out;
  std::map<std::string, size_t> at;
  for (const plan::Phase* ph : *p.phases()) {
    for (const plan::Node* n : *ph->nodes()) {
      const OpKind op = static_cast<OpKind>(n->op());
      if (op != OpKind::matmul && op != OpKind::grouped_matmul) continue;
      if (n->parallel() == plan::Parallel::tensor_split) continue;  // a slice of the weight: not the tensor's shape
      if (!n->weights() || n->weights()->size() == 0) continue;
      std::vector<std::string> kernels = valid_kernels(p, *n);
      if (kernels.size() < 2) continue;
      const std::string key = node_shape_key(p, *n);
      auto [it, fresh] = at.emplace(key, out.size());
      if (fresh) {
        const plan::Weight* w = p.weights()->Get(n->weights()->Get(0));
        TuneTarget t;
        t.op = op;
        t.shape = key;
        t.tokens = n->tokens();
        t.type = static_cast<DType>(w->dtype());
        t.cols = w->shape()->size() > 0 ? w->shape()->Get(0) : 1;
        t.rows = w->shape()->size() > 1 ? w->shape()->Get(1) : 1;
        t.groups = op == OpKind::grouped_matmul && n->dims() ? n->dims()->groups() : 1;
        t.paired = n->weights()->size() == 2;
        t.kernels = std::move(kernels);
        out.push_back(std::move(t));
      }
      ++out[it->second].nodes;
    }
  }
  return out;
}

}  // namespace fp
