// The plan's phases as the CUDA executor runs them (executor.h ProductKernels): the
// product-kernel choices it dispatches, the node list its walk is checked against, and
// the graph segments. CUDA-free, so the CPU build and its tests check the same refusals.
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

}  // namespace

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
    if ((op == OpKind::matmul && id == "cuda.gemm.dequant_cublas_f16") ||
        (op == OpKind::grouped_matmul && id == "cuda.grouped_gemm.dequant_cublas_f16")) {
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

namespace {

// "[ne0, ne1, ...]" of a plan weight, for comparing and naming shapes.
std::string shape_of(const plan::Weight* w) {
  std::string s = "[";
  if (w->shape())
    for (uint32_t i = 0; i < w->shape()->size(); ++i) s += (i ? ", " : "") + std::to_string(w->shape()->Get(i));
  return s + "]";
}

}  // namespace

std::string ProductKernels::Phase::walk_difference(uint32_t i, OpKind op, int32_t layer, std::string_view weight,
                                                   std::string_view second) const {
  if (i >= nodes.size())
    return str("phase ", name, ": the CUDA executor runs a ", op_kind_name(op), " node (layer ", layer,
               ") past the plan's ", nodes.size(), " nodes");
  const Node& n = nodes[i];
  // A paired node against two unpaired ones (or the other way round) differs in `second`.
  if (n.op == op && n.layer == layer && (weight.empty() || (weight == n.weight && second == n.second))) return "";
  auto reads = [](std::string_view w, std::string_view w2) {
    return w.empty() ? std::string() : str(" reading ", w, w2.empty() ? std::string() : str(" and ", w2));
  };
  return str("phase ", name, " node ", i, " (", n.name, "): the plan runs ", op_kind_name(n.op), " on layer ", n.layer,
             reads(n.weight, n.second), ", the CUDA executor runs ", op_kind_name(op), " on layer ", layer,
             reads(weight, second));
}

std::string ProductKernels::Phase::walk_end_difference(uint32_t ran, bool logits) const {
  const uint32_t want = logits ? uint32_t(nodes.size()) : head_first;
  if (ran == want) return "";
  return str("phase ", name, ": the CUDA executor's step ", logits ? "with" : "without", " logits ended after ", ran,
             " nodes, the plan's after ", want, ran < nodes.size() ? " (next: " + nodes[ran].name + ")" : std::string());
}

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
    std::vector<bool> capturable;
    for (const plan::Node* n : *ph->nodes()) {
      const std::string id = p.kernel_id(*n);
      const OpKind op = OpKind(uint8_t(n->op()));
      const bool weighted = n->weights() && n->weights()->size() > 0;
      ProductKernels::Node& walk = dst.nodes.emplace_back();
      walk.op = op;
      walk.layer = n->layer();
      walk.name = n->name()->str();
      walk.attention_tc = op == OpKind::attention && id == "cuda.attention.prefill";
      walk.overlap_prev = n->overlap_prev();  // verify_plan has checked the kernel honours it here
      if (weighted) walk.weight = p->weights()->Get(n->weights()->Get(0))->name()->str();
      const bool paired = op == OpKind::matmul && weighted && n->weights()->size() == 2;
      if (paired) walk.second = p->weights()->Get(n->weights()->Get(1))->name()->str();
      const KernelInfo* info = find_kernel(id);
      capturable.push_back(!info || info->capturable);
      auto refuse = [&](const std::string& why) {
        fail(p.path, ": node ", n->name()->str(), " in phase ", dst.name, " runs kernel ", id, ": ", why,
             "; recompile the plan with this build (or --override a kernel it implements)");
      };
      // Multi-GPU plans: every device runs every node (MULTI_GPU.md); tensor-split
      // products (heads, rows or columns per device) are not implemented here.
      if (p->device()->gpus() > 1 && n->device() != -1)
        fail(p.path, ": node ", n->name()->str(), " in phase ", dst.name, " runs on device ", n->device(),
             " only; the CUDA executor runs every node of a multi-GPU plan on every device (device -1)");
      if (n->parallel() == plan::Parallel::tensor_split)
        fail(p.path, ": node ", n->name()->str(), " in phase ", dst.name, " is tensor_split: the CUDA executor runs "
             "attention, the shared expert and the head replicated on every GPU and splits only the routed experts "
             "(the plan was compiled with --inexact-parallel; recompile without it)");
      if (op == OpKind::matmul || op == OpKind::grouped_matmul || op == OpKind::moe) {
        if (!weighted) refuse("the node names no weight");
        const plan::Weight* w = p->weights()->Get(n->weights()->Get(0));
        ProductKernel k{};
        const std::string why = product_kernel_for(id, op, static_cast<DType>(w->dtype()), k);
        if (!why.empty()) refuse(why);
        // overlap_prev: verify_plan has checked that the kernel honours it on this device.
        dst.by_weight[w->name()->str()] = {k, n->overlap_prev()};
        if (paired) {  // the pair's second weight runs in the first one's call, under its kernel
          const plan::Weight* w2 = p->weights()->Get(n->weights()->Get(1));
          if (w2->dtype() != w->dtype() || shape_of(w2) != shape_of(w))
            refuse(str("a paired product over ", w->name()->str(), " (", dtype_name(DType(w->dtype())), " ",
                       shape_of(w), ") and ", w2->name()->str(), " (", dtype_name(DType(w2->dtype())), " ",
                       shape_of(w2), "); expected one dtype and shape"));
          dst.by_weight[w2->name()->str()] = dst.by_weight[w->name()->str()];
        } else if (op == OpKind::matmul && n->weights()->size() > 1) {
          refuse(str(n->weights()->size(), " weights on a matmul node; expected one, or two for a pair"));
        }
        out.uses_gemm |= k == ProductKernel::gemm_dequant_f16;
        out.uses_moe_grouped |= k == ProductKernel::moe_grouped_mma;
        continue;
      }
      if (!info || info->backend != Backend::Cuda || info->op != op) refuse("not a CUDA kernel of this op in this build");
      if (!info->implemented) refuse(kNotImplemented);
    }
    dst.head_first = uint32_t(dst.nodes.size());
    for (uint32_t i = 0; i < dst.nodes.size(); ++i)
      if (dst.nodes[i].op == OpKind::output_hc_head) {
        dst.head_first = i;
        break;
      }
    // Segments: one stream, no events (verify_plan has checked they cover the nodes).
    for (uint32_t si = 0; si < ph->segments()->size(); ++si) {
      const plan::Segment* s = ph->segments()->Get(si);
      const std::string where = str(p.path, ": phase ", dst.name, " segment ", si, " (nodes ", s->first(), "..",
                                    s->first() + s->count() - 1, ")");
      if (s->stream() != 0 || (s->wait_events() && s->wait_events()->size()) ||
          (s->record_events() && s->record_events()->size()))
        fail(where, " runs on stream ", s->stream(), " with ", s->wait_events() ? s->wait_events()->size() : 0,
             " events waited and ", s->record_events() ? s->record_events()->size() : 0,
             " recorded: the CUDA executor runs every node on one stream (stream 0, no events)");
      if (s->graph())
        for (uint32_t i = s->first(); i < s->first() + s->count(); ++i)
          if (!capturable[i])
            fail(where, " is a CUDA graph, but node ", dst.nodes[i].name, " runs kernel ", p.kernel_id(*ph->nodes()->Get(i)),
                 ", which this build cannot capture; recompile the plan with this build");
      dst.segments.push_back({s->first(), s->count(), s->graph()});
    }
  }
  if (out.phases.empty()) fail(p.path, ": no decode or prefill phase to run");
  return out;
}

}  // namespace fp::cuda
