// The plan's product-kernel choices as the CUDA executor dispatches them (executor.h
// ProductKernels). CUDA-free, so the CPU build and its tests check the same refusals.
#include <cctype>

#include "ops/core/error.h"
#include "ops/registry/kernel_registry.h"
#include "planner/plan_io/plan_io.h"
#include "runtime/cuda/executor.h"

namespace fp::cuda {
namespace {

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// The kernel behind `id` for an `op` node over `wtype` weights, or why there is none.
std::string product_kernel_for(const std::string& id, OpKind op, DType wtype, ProductKernel& out) {
  if (op == OpKind::matmul || op == OpKind::grouped_matmul) {
    const std::string pre = op == OpKind::matmul ? "cuda.matvec." : "cuda.grouped_matvec.";
    if (id.rfind(pre, 0) == 0) {
      std::string t = id.substr(pre.size());
      const bool xf32 = t.size() > 5 && t.compare(t.size() - 5, 5, ".xf32") == 0;
      if (xf32) t.resize(t.size() - 5);
      if (t != lower(dtype_name(wtype))) return str("it reads ", t, " weights, the node's are ", dtype_name(wtype));
      out = xf32 ? ProductKernel::matvec_xf32 : ProductKernel::matvec;
      return "";
    }
    if (op == OpKind::matmul && id == "cuda.gemm.dequant_cublas_f16") {
      if (wtype == DType::F32) return "it does not read F32 weights";
      out = ProductKernel::gemm_dequant_f16;
      return "";
    }
  }
  if (op == OpKind::moe && id == "cuda.moe.matvec") {
    out = ProductKernel::moe_matvec;
    return "";
  }
  if (op == OpKind::moe && id == "cuda.moe.grouped_dequant_mma") {  // moe_grouped.cu checks the dtypes
    out = ProductKernel::moe_grouped_mma;
    return "";
  }
  return "the CUDA executor does not implement it";
}

}  // namespace

const ProductKernels::Phase* ProductKernels::for_step(int64_t n) const {
  for (const Phase& p : phases)
    if (p.min_tokens <= n && n <= p.max_tokens) return &p;
  return nullptr;
}

ProductKernels product_kernels(const LoadedPlan& p) {
  ProductKernels out;
  std::vector<const plan::Phase*> run;  // decode first: a one-token step is a decode step
  for (const plan::Phase* ph : *p->phases())
    if (ph->kind() == plan::PhaseKind::decode) run.insert(run.begin(), ph);
    else if (ph->kind() == plan::PhaseKind::prefill) run.push_back(ph);
  for (const plan::Phase* ph : run) {
    ProductKernels::Phase& dst = out.phases.emplace_back();
    dst.name = ph->name()->str();
    dst.min_tokens = ph->min_tokens();
    dst.max_tokens = ph->max_tokens();
    for (const plan::Node* n : *ph->nodes()) {
      const std::string id = p.kernel_id(*n);
      const OpKind op = OpKind(uint8_t(n->op()));
      auto refuse = [&](const std::string& why) {
        fail(p.path, ": node ", n->name()->str(), " in phase ", dst.name, " runs kernel ", id, ": ", why,
             "; recompile the plan with this build (or --override a kernel it implements)");
      };
      if (op == OpKind::matmul || op == OpKind::grouped_matmul || op == OpKind::moe) {
        if (!n->weights() || n->weights()->size() == 0) refuse("the node names no weight");
        const plan::Weight* w = p->weights()->Get(n->weights()->Get(0));
        ProductKernel k{};
        const std::string why = product_kernel_for(id, op, static_cast<DType>(w->dtype()), k);
        if (!why.empty()) refuse(why);
        dst.by_weight[w->name()->str()] = k;
        out.uses_gemm |= k == ProductKernel::gemm_dequant_f16;
        out.uses_moe_grouped |= k == ProductKernel::moe_grouped_mma;
        continue;
      }
      const KernelInfo* k = find_kernel(id);
      if (!k || k->backend != Backend::Cuda || k->op != op) refuse("not a CUDA kernel of this op in this build");
      if (!k->implemented) refuse(kNotImplemented);
    }
  }
  if (out.phases.empty()) fail(p.path, ": no decode or prefill phase to run");
  return out;
}

}  // namespace fp::cuda
