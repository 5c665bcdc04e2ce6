// The compile driver (see compile.h): fit the model into the device's memory, then
// write down every decision as a plan::PlanT.
#include "planner/compile/compile.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "ops/core/error.h"
#include "ops/moe/moe_cuda.h"
#include "ops/quant/quant_cuda.h"
#include "planner/graph/op_graph.h"
#include "planner/memory/cuda_buffers.h"
#include "planner/placement/placement.h"
#include "planner/plan_io/fingerprint.h"
#include "planner/plan_io/plan_view.h"

namespace fp {

namespace {

uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
std::string gib(double bytes) { return format_gib(bytes); }

// One complete try at a (context, offload set, parallelism): graph, placement, kernels,
// memory. On several GPUs, KV cache, activations, workspace and reserve are per device
// (every device holds the whole KV: DS4 attention has one KV head shared by all heads).
struct Attempt {
  uint64_t context = 0, cost_context = 0;
  ParallelOptions par;
  OpGraph graph;
  WeightPlacement placement;
  std::vector<PhaseSelection> selection;
  uint64_t kv = 0, activations = 0, workspace = 0, reserve = 0;
  uint64_t total() const { return placement.device_bytes + kv + activations + workspace + reserve; }
  uint64_t device_total(size_t d) const { return placement.per_device[d] + kv + activations + workspace + reserve; }
  size_t fullest() const {
    size_t best = 0;
    for (size_t d = 1; d < placement.per_device.size(); ++d)
      if (device_total(d) > device_total(best)) best = d;
    return best;
  }
  double decode_us() const {
    for (size_t i = 0; i < graph.phases.size(); ++i)
      if (graph.phases[i].kind == PhaseKind::decode) return selection[i].predicted_us;
    return 0;
  }
};

// One combination of replicated / split parts the multi-GPU compiler weighs.
struct ParallelTry {
  ParallelOptions par;
  double decode_us = 0;
  uint64_t max_device_bytes = 0;
  bool fits = false;
  bool excluded = false;  // priced, never chosen (exact parallelism)
  std::string why_not;
};

class Compiler {
 public:
  Compiler(const Model& m, const DeviceProfile& p, const CompileOptions& o)
      : m_(m), p_(p), o_(o), tensors_(model_tensors(m)), units_(offload_units(m, tensors_)) {
    for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].info] = i;
  }

  std::unique_ptr<plan::PlanT> run() {
    const ModelConfig& c = m_.config();
    devices_ = p_.backend == Backend::Cuda ? std::max<uint32_t>(p_.host_gpus, 1) : 1;
    par_.devices = devices_;
    const uint64_t model_ctx = c.context_length ? c.context_length : kDefaultMaxContext;
    requested_ = o_.max_context ? o_.max_context : std::min(model_ctx, kDefaultMaxContext);
    if (requested_ > model_ctx)
      fail("--max-context ", requested_, ": larger than the model's context length ", model_ctx, "; expected at most ",
           model_ctx);
    if (o_.kv_dtype && *o_.kv_dtype != DType::F32 && *o_.kv_dtype != DType::F16)
      fail("--kv-dtype ", dtype_name(*o_.kv_dtype), ": expected f32 or f16");
    // F16 storage holds the same values only where the rows are F16-rounded before they
    // are stored: official numerics. Plain numerics would round them here, silently.
    if (o_.kv_dtype == DType::F16 && o_.numerics != Numerics::official)
      fail("--kv-dtype f16 with --numerics plain: plain numerics keeps KV rows in F32 (official numerics rounds "
           "them to F16 before they are stored, so F16 storage changes nothing there); expected --kv-dtype f32 or "
           "--numerics official");
    std::vector<std::string> host(tensors_.size());
    if (devices_ > 1) return run_multi(host);

    Attempt a = attempt(requested_, host);
    if (fits(a)) return assemble(a);

    if (o_.fit_context) {
      const uint64_t best = largest_fitting(host, requested_ - 1);
      if (best == 0) fail(no_fit_message(a, host, false));
      Attempt b = attempt(best, host);
      note_ = str("max context lowered from ", requested_, " to ", best, " tokens to fit (--fit-context)");
      return assemble(b);
    }
    if (o_.allow_offload && p_.backend == Backend::Cuda) {
      uint64_t need = a.total() - p_.usable_bytes;
      size_t offloaded = 0;
      while (offloaded < units_.size()) {
        // Give up whole layers of routed experts until the estimate fits, then check
        // with a full attempt (kernel workspaces can change when weights move).
        uint64_t freed = 0;
        while (offloaded < units_.size() && freed < need) {
          const OffloadUnit& u = units_[offloaded++];
          for (size_t t : u.tensors)
            host[t] = "routed experts: the device lacks memory; the last layers' experts go to host memory first";
          freed += u.bytes;
        }
        Attempt b = attempt(requested_, host);
        if (fits(b)) {
          const uint64_t moved = b.placement.host_bytes;
          note_ = str("routed experts of ", offloaded, " layer", offloaded == 1 ? "" : "s", " (",
                      units_[offloaded - 1].layer, "..", units_[0].layer, ") in pinned host memory (", gib(moved),
                      "): the model needs ", gib(double(b.total() + b.placement.host_bytes)), ", the device has ",
                      gib(double(p_.usable_bytes)), " usable");
          return assemble(b);
        }
        need = b.total() > p_.usable_bytes ? b.total() - p_.usable_bytes : 1;
      }
    }
    fail(no_fit_message(a, host, o_.allow_offload && p_.backend == Backend::Cuda));
  }

 private:
  // ---- Parallelism ----------------------------------------------------------------
  // Every combination of {attention, shared expert, head} x {replicated, split} is
  // compiled in full and the decode step's predicted time decides, among those that fit
  // every device. What that weighs, per layer and part (N devices, B = bytes of the
  // part's weights, bw = device memory bandwidth, alpha + f*b/beta a collective of b
  // bytes as in ops/collective/registry.cpp):
  //   replicated:  t = t_kernels(B)            memory per device B
  //   split:       t = t_kernels(B / N) + t_collective   memory per device B / N
  // with t_collective = alpha + 2(N-1)/N * 4*n_embd/beta (all-reduce after attn_output_b,
  // or after ffn_down_shexp for the shared expert) for attention and the shared expert,
  // and alpha + (N-1)/N * 4*n_vocab/beta (all-gather of the logits) for the head. Routed
  // experts are always split by experts: each device reads the experts of its slice that
  // the router picked, so the step waits for the busiest device (expected maximum under
  // uniform routing, planner/graph/op_graph.h), plus one all-reduce of the per-slot
  // outputs, 4*k*n_embd bytes per token and layer (k experts used: exact, see op_graph.cpp),
  // and their combine. Ties go to the option listed first (fewer splits), so the choice
  // is deterministic.
  std::unique_ptr<plan::PlanT> run_multi(const std::vector<std::string>& host) {
    for (int bits = 0; bits < 8; ++bits) {
      ParallelTry t;
      t.par = par_;
      t.par.attention_split = bits & 1;
      t.par.shared_split = bits & 2;
      t.par.head_split = bits & 4;
      t.why_not = parallel_rejection(m_, t.par);
      // Excluded options are still priced, so the plan's table shows what they would cost.
      t.excluded = !t.why_not.empty() || (o_.exact_parallel && bits != 0);
      if (t.why_not.empty()) {
        const Attempt a = attempt(requested_, host, t.par);
        t.decode_us = a.decode_us();
        t.max_device_bytes = a.device_total(a.fullest());
        t.fits = fits(a);
        if (!t.fits)
          t.why_not = str("device ", a.fullest(), " needs ", gib(double(t.max_device_bytes)), ", has ",
                          gib(double(p_.usable_bytes)), " usable");
      }
      if (t.why_not.empty() && t.excluded)
        t.why_not = "exact parallelism (the default; --inexact-parallel weighs it): a split part adds partial sums "
                    "over the GPUs, not bit-identical to one GPU, and the CUDA executor does not run it";
      tries_.push_back(std::move(t));
    }
    std::vector<size_t> order(tries_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) {
      const ParallelTry &a = tries_[x], &b = tries_[y];
      if (a.excluded != b.excluded) return !a.excluded;
      if (a.fits != b.fits) return a.fits;
      if (a.why_not.empty() != b.why_not.empty()) return a.why_not.empty();
      return a.fits ? a.decode_us < b.decode_us : a.max_device_bytes < b.max_device_bytes;
    });
    std::vector<ParallelTry> sorted;
    for (size_t i : order) sorted.push_back(tries_[i]);
    tries_ = std::move(sorted);
    const ParallelTry& best = tries_.front();
    if (best.fits) {
      Attempt a = attempt(requested_, host, best.par);
      note_ = str("model spread over ", devices_, " GPUs: routed experts split by experts, ", parts_words(best.par));
      return assemble(a);
    }
    if (!best.why_not.empty() && best.max_device_bytes == 0)
      fail(m_.file().path(), ": cannot spread over ", devices_, " GPUs of ", p_.name, ": ", best.why_not);
    // Nothing fits: the option needing the least memory on its fullest device is the
    // closest; lower the context (--fit-context) or report it.
    const Attempt a = attempt(requested_, host, best.par);
    if (o_.fit_context) {
      const uint64_t ctx = largest_fitting(host, requested_ - 1, best.par);
      if (ctx == 0) fail(no_fit_message(a, host, false), inexact_hint());
      Attempt b = attempt(ctx, host, best.par);
      tries_.front().fits = true;
      tries_.front().why_not.clear();
      note_ = str("model spread over ", devices_, " GPUs; max context lowered from ", requested_, " to ", ctx,
                  " tokens to fit (--fit-context)");
      return assemble(b);
    }
    fail(no_fit_message(a, host, false), inexact_hint());
  }

  // With nothing fitting among the exact options: which split option would fit if the
  // user allowed inexact parallelism ("" when none would, or it is already allowed).
  std::string inexact_hint() const {
    if (!o_.exact_parallel) return "";
    for (const ParallelTry& t : tries_)
      if (t.excluded && t.fits)
        return str("; with --inexact-parallel (split parts sum over the GPUs in another order: not bit-identical to "
                   "one GPU, and not run by the CUDA executor yet) ", parts_words(t.par), " would fit (",
                   gib(double(t.max_device_bytes)), " on the fullest device)");
    return "";
  }

  // "attention split, shared expert replicated, head split": how par places the parts
  // that may be replicated or split.
  static std::string parts_words(const ParallelOptions& par) {
    auto w = [](bool split) { return split ? "split" : "replicated"; };
    return str("attention ", w(par.attention_split), ", shared expert ", w(par.shared_split), ", head ",
               w(par.head_split));
  }

  GraphOptions graph_options(uint64_t ctx, const ParallelOptions& par) const {
    GraphOptions g;
    g.par = par;
    g.max_context = ctx;
    g.cost_context = std::min(ctx, o_.cost_context ? o_.cost_context : kDefaultCostContext);
    g.prefill_buckets = o_.prefill_buckets;
    g.mtp_depth = o_.mtp_depth;
    g.kv_dtype = kv_dtype();
    return g;
  }

  Attempt attempt(uint64_t ctx, const std::vector<std::string>& host) const { return attempt(ctx, host, par_); }
  Attempt attempt(uint64_t ctx, const std::vector<std::string>& host, const ParallelOptions& par) const {
    Attempt a;
    a.context = ctx;
    a.par = par;
    const GraphOptions go = graph_options(ctx, par);
    a.cost_context = go.cost_context;
    a.graph = build_op_graph(m_, go);
    std::vector<SliceAxis> axis;
    if (devices_ > 1) {
      // How each tensor is split, from the nodes that read it (the same in every phase).
      axis.assign(tensors_.size(), SliceAxis::whole);
      std::vector<bool> seen(tensors_.size(), false);
      for (const PhaseGraph& ph : a.graph.phases)
        for (const GraphNode& n : ph.nodes)
          for (const WeightUse& w : n.weights) {
            const size_t i = index_.at(w.tensor);
            if (seen[i] && axis[i] != w.axis)
              fail("op graph: ", w.tensor->name, " is split two ways (", n.name, " in ", ph.name, ")");
            seen[i] = true;
            axis[i] = w.axis;
          }
    }
    a.placement = place_weights(tensors_, host, p_, devices_, axis);
    for (PhaseGraph& ph : a.graph.phases)
      for (GraphNode& n : ph.nodes) {
        n.shape.weight_bytes = n.shape.host_weight_bytes = 0;
        for (const WeightUse& w : n.weights) {
          const bool on_host = a.placement.slots[index_.at(w.tensor)].placement == Placement::host_mapped;
          (on_host ? n.shape.host_weight_bytes : n.shape.weight_bytes) += w.read_bytes;
        }
      }
    a.selection = select_kernels(a.graph, p_, o_.overrides);
    for (const GraphBuffer& b : a.graph.buffers) {
      const uint64_t bytes = round_up(b.bytes, 256);
      if (b.kind == BufferKind::activation || b.kind == BufferKind::io) a.activations += bytes;
      else a.kv += bytes;
    }
    // Workspaces are sized for the longest context the plan allows, not the cost
    // context: an indexer at max context scores every compressed row.
    const DeviceRates rates = p_.rates();
    for (size_t pi = 0; pi < a.selection.size(); ++pi)
      for (size_t ni = 0; ni < a.selection[pi].nodes.size(); ++ni) {
        NodeChoice& c = a.selection[pi].nodes[ni];
        const GraphNode& n = a.graph.phases[pi].nodes[ni];
        if (n.max_rows > n.shape.rows) {
          KernelShape at_max = n.shape;
          at_max.rows = n.max_rows;
          c.cost.workspace_bytes = std::max(c.cost.workspace_bytes, c.kernel->cost(at_max, rates).workspace_bytes);
        }
        a.workspace = std::max(a.workspace, round_up(c.cost.workspace_bytes, 256));
      }
    if (p_.backend == Backend::Cuda) budget_cuda_executor(a);
    a.reserve = p_.backend == Backend::Cuda ? kGraphReserveBytes : 0;
    if (devices_ > 1) a.reserve += kCollectiveReserveBytes;
    return a;
  }

  // A CUDA plan budgets what the CUDA executor allocates (planner/memory/cuda_buffers.h)
  // for the plan's largest step and context, in place of the op graph's buffer sizes: the
  // executor holds every step's activations at the largest bucket, the logits of every
  // row, and the indexer's scores over the whole context.
  void budget_cuda_executor(Attempt& a) const {
    CudaBufferOptions bo;
    bo.max_context = int64_t(a.context);
    bo.logit_rows = cuda_logit_rows(o_.mtp_depth);
    bo.expert_split = devices_ > 1;
    bo.kv_f16 = kv_dtype() == DType::F16;
    for (const PhaseGraph& ph : a.graph.phases)
      if (ph.kind == PhaseKind::prefill) bo.max_step = std::max<int64_t>(bo.max_step, ph.max_tokens);
    for (const PhaseSelection& sel : a.selection)
      for (const NodeChoice& c : sel.nodes) {
        bo.moe_grouped = bo.moe_grouped || c.kernel->id == cuda::kMoeGroupedDequantMma;
        bo.gemm = bo.gemm || (c.kernel->op == OpKind::matmul && c.kernel->id == cuda::kGemmDequantCublasF16);
      }
    const CudaBuffers b = cuda_buffers(m_.config(), bo);
    a.kv = b.state_bytes();
    a.activations = b.activation_bytes() + b.table_bytes();
    a.workspace = b.workspace_bytes();
  }

  bool fits(const Attempt& a) const {
    if (devices_ > 1) return a.device_total(a.fullest()) <= p_.usable_bytes;
    if (a.total() > p_.usable_bytes) return false;
    return p_.host_memory_bytes == 0 || a.placement.host_bytes <= p_.host_memory_bytes;
  }

  // Largest context in [1, hi] that fits with the given offload set (0 if none).
  uint64_t largest_fitting(const std::vector<std::string>& host, uint64_t hi) const {
    return largest_fitting(host, hi, par_);
  }
  uint64_t largest_fitting(const std::vector<std::string>& host, uint64_t hi, const ParallelOptions& par) const {
    if (hi == 0 || !fits(attempt(1, host, par))) return 0;
    uint64_t lo = 1;
    while (lo < hi) {
      const uint64_t mid = lo + (hi - lo + 1) / 2;
      if (fits(attempt(mid, host, par))) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  std::string no_fit_message(const Attempt& first, std::vector<std::string> host, bool offload) const {
    if (offload)
      for (const OffloadUnit& u : units_)
        for (size_t t : u.tensors) host[t] = "offloaded";
    const Attempt worst = offload ? attempt(requested_, host) : first;
    const size_t dev = worst.fullest();
    const uint64_t need = devices_ > 1 ? worst.device_total(dev) : worst.total();
    const double short_bytes = double(need) - double(p_.usable_bytes);
    const std::string on =
        devices_ > 1 ? str(" on device ", dev, " of ", devices_, " (the fullest, with routed experts split, ",
                           parts_words(worst.par), "; every ", o_.exact_parallel ? "exact " : "", "option was tried)")
                     : std::string();
    std::string s = str(m_.file().path(), " does not fit ", p_.name, ": needs ", gib(double(need)),
                        " of device memory at max context ", requested_, offload ? " with every routed expert in host memory" : "", on,
                        " (weights ", gib(double(worst.placement.per_device[dev])), ", KV ", gib(double(worst.kv)),
                        ", activations ", gib(double(worst.activations)), ", workspace ", gib(double(worst.workspace)),
                        ", graph reserve ", gib(double(worst.reserve)), "), the device has ", gib(double(p_.usable_bytes)),
                        " usable: short by ", gib(std::max(0.0, short_bytes)));
    if (p_.host_memory_bytes && worst.placement.host_bytes > p_.host_memory_bytes)
      s += str("; host memory: needs ", gib(double(worst.placement.host_bytes)), ", host has ",
               gib(double(p_.host_memory_bytes)));
    const uint64_t best = largest_fitting(host, requested_ - 1, worst.par);
    if (best > 0)
      s += str("; the largest context that fits is ", best, " tokens (--max-context ", best,
               offload ? "" : " or --fit-context", ")");
    else
      s += "; no context fits: the weights alone exceed the device";
    return s;
  }

  // ---- the plan ------------------------------------------------------------------

  std::unique_ptr<plan::PlanT> assemble(const Attempt& a) {
    auto pl = std::make_unique<plan::PlanT>();
    provenance(*pl, a);
    model_info(*pl);
    device(*pl);
    pl->numerics = static_cast<plan::Numerics>(o_.numerics);
    weights(*pl, a);
    buffers(*pl, a);
    kernels_and_phases(*pl, a);
    memory(*pl, a);
    parallelism(*pl, a);
    return pl;
  }

  void provenance(plan::PlanT& pl, const Attempt& a) {
    auto pv = std::make_unique<plan::ProvenanceT>();
    pv->format_version = kPlanFormatVersion;
    pv->planner_version = FLASHPLAN_VERSION;
    auto op = std::make_unique<plan::OptionsT>();
    op->max_context = a.context;
    op->requested_context = requested_;
    op->numerics = static_cast<plan::Numerics>(o_.numerics);
    op->kv_dtype = static_cast<plan::DType>(kv_dtype());
    op->prefill_buckets = o_.prefill_buckets;
    op->mtp_depth = o_.mtp_depth;
    op->allow_offload = o_.allow_offload;
    op->fit_context = o_.fit_context;
    op->exact_parallel = o_.exact_parallel;
    op->pdl = o_.pdl;
    op->cost_context = a.cost_context;
    for (const auto& ov : o_.overrides) {
      auto x = std::make_unique<plan::OverrideT>();
      x->pattern = ov.pattern;
      x->kernel = ov.kernel;
      op->overrides.push_back(std::move(x));
    }
    op->mtp_file = o_.mtp_file;
    pv->options = std::move(op);
    pl.provenance = std::move(pv);
  }

  void model_info(plan::PlanT& pl) {
    const ModelConfig& c = m_.config();
    auto mi = std::make_unique<plan::ModelInfoT>();
    mi->file = o_.model_file;
    mi->fingerprint = gguf_fingerprint(m_.file());
    if (m_.mtp_file()) mi->mtp_fingerprint = gguf_fingerprint(*m_.mtp_file());
    auto mc = std::make_unique<plan::ModelConfigT>();
    mc->arch = c.arch;
    mc->name = c.name;
    mc->n_layer = c.n_layer;
    mc->n_embd = c.n_embd;
    mc->n_vocab = c.n_vocab;
    mc->n_head = c.n_head;
    mc->n_head_kv = c.n_head_kv;
    mc->head_dim = c.head_dim;
    mc->rms_eps = c.rms_eps;
    mc->q_lora_rank = c.q_lora_rank;
    mc->o_lora_rank = c.o_lora_rank;
    mc->o_groups = c.o_groups;
    mc->sliding_window = c.sliding_window;
    mc->compress_ratios = c.compress_ratios;
    mc->compress_rope_freq_base = c.compress_rope_freq_base;
    mc->indexer_heads = c.indexer_heads;
    mc->indexer_head_dim = c.indexer_head_dim;
    mc->indexer_top_k = c.indexer_top_k;
    mc->rope_dim = c.rope_dim;
    mc->rope_freq_base = c.rope_freq_base;
    mc->rope_scaling_factor = c.rope_scaling_factor;
    mc->rope_orig_ctx = c.rope_orig_ctx;
    mc->yarn_beta_fast = c.yarn_beta_fast;
    mc->yarn_beta_slow = c.yarn_beta_slow;
    mc->n_expert = c.n_expert;
    mc->n_expert_used = c.n_expert_used;
    mc->n_expert_shared = c.n_expert_shared;
    mc->expert_ff = c.expert_ff;
    mc->expert_weights_scale = c.expert_weights_scale;
    mc->expert_weights_norm = c.expert_weights_norm;
    mc->hash_layer_count = c.hash_layer_count;
    mc->swiglu_clamp_exp = c.swiglu_clamp_exp;
    mc->swiglu_clamp_shexp = c.swiglu_clamp_shexp;
    mc->hc_count = c.hc_count;
    mc->hc_sinkhorn_iters = c.hc_sinkhorn_iters;
    mc->hc_eps = c.hc_eps;
    mc->context_length = c.context_length;
    mc->bos_id = c.bos_id;
    mc->eos_id = c.eos_id;
    mc->mtp = m_.mtp_available() ? static_cast<plan::MtpLayout>(c.mtp) : plan::MtpLayout::none;
    mi->config = std::move(mc);
    mi->tensor_count = static_cast<uint32_t>(tensors_.size());
    for (const auto& t : tensors_) mi->tensor_bytes += t.info->n_bytes;
    pl.model = std::move(mi);
  }

  void device(plan::PlanT& pl) {
    auto d = std::make_unique<plan::DeviceT>();
    d->name = p_.name;
    d->description = p_.description;
    d->backend = p_.backend == Backend::Cuda ? plan::Backend::cuda : plan::Backend::cpu;
    d->cc_major = p_.cc_major;
    d->cc_minor = p_.cc_minor;
    d->sm_count = p_.sm_count;
    d->memory_bytes = p_.memory_bytes;
    d->usable_bytes = p_.usable_bytes;
    d->bandwidth_gbps = p_.bandwidth_gbps;
    d->l2_bytes = p_.l2_bytes;
    d->smem_per_sm_bytes = p_.smem_per_sm_bytes;
    d->sm_clock_mhz = p_.sm_clock_mhz;
    d->memory_clock_mhz = p_.memory_clock_mhz;
    d->fp32_tflops = p_.backend == Backend::Cuda ? p_.fp32_tflops : p_.cpu_fp32_gflops / 1000.0;
    d->fp16_tflops = p_.fp16_tflops;
    d->bf16_tflops = p_.bf16_tflops;
    d->fp8_tflops = p_.fp8_tflops;
    d->int8_tops = p_.int8_tops;
    d->pcie_gbps = p_.pcie_gbps;
    d->nvlink_gbps = p_.nvlink_gbps;
    d->vmm_granularity = p_.vmm_granularity;
    d->host_gpus = p_.host_gpus;
    d->host_memory_bytes = p_.host_memory_bytes;
    d->host_link_gbps = p_.host_link_gbps;
    d->gpus = devices_;
    d->collective_latency_us = p_.collective_latency_us;
    d->cpu_threads = p_.cpu_threads;
    d->measured_bandwidth_gbps = p_.measured_bandwidth_gbps;
    d->measured_pcie_gbps = p_.measured_pcie_gbps;
    for (const auto& mk : p_.measured) {
      auto k = std::make_unique<plan::KernelTimingT>();
      k->kernel = mk.kernel;
      k->shape = mk.shape;
      k->us = mk.us;
      d->measured.push_back(std::move(k));
    }
    pl.device = std::move(d);
  }

  void weights(plan::PlanT& pl, const Attempt& a) {
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const gguf::TensorInfo& t = *tensors_[i].info;
      const WeightSlot& s = a.placement.slots[i];
      auto w = std::make_unique<plan::WeightT>();
      w->name = t.name;
      w->file = tensors_[i].file;
      w->shard = static_cast<uint16_t>(t.shard);
      w->offset = t.file_offset;
      w->dtype = static_cast<plan::DType>(t.type);
      for (uint32_t d = 0; d < std::max<uint32_t>(t.n_dims, 1); ++d) w->shape.push_back(t.ne[d]);
      w->bytes = t.n_bytes;
      w->placement = static_cast<plan::Placement>(s.placement);
      w->device = s.device;
      w->chunk = s.chunk;
      w->chunk_offset = s.offset;
      w->repack = plan::Repack::none;
      w->reason = s.reason;
      for (const SliceSlot& sl : s.slices) {
        auto x = std::make_unique<plan::WeightSliceT>();
        x->device = sl.device;
        x->axis = static_cast<plan::SliceAxis>(sl.axis);
        x->first = sl.first;
        x->count = sl.count;
        x->bytes = sl.bytes;
        x->chunk = sl.chunk;
        x->chunk_offset = sl.offset;
        w->slices.push_back(std::move(x));
      }
      pl.weights.push_back(std::move(w));
    }
    for (const Chunk& c : a.placement.chunks) {
      auto x = std::make_unique<plan::ChunkT>();
      x->id = c.id;
      x->placement = static_cast<plan::Placement>(c.placement);
      x->device = c.device;
      x->bytes = c.bytes;
      x->alignment = c.alignment;
      pl.chunks.push_back(std::move(x));
    }
  }

  void buffers(plan::PlanT& pl, const Attempt& a) {
    const ModelConfig& c = m_.config();
    for (size_t i = 0; i < a.graph.buffers.size(); ++i) {
      const GraphBuffer& b = a.graph.buffers[i];
      auto x = std::make_unique<plan::BufferT>();
      x->id = static_cast<uint32_t>(i);
      x->name = b.name;
      x->kind = static_cast<plan::BufferKind>(b.kind);
      x->layer = b.layer;
      x->dtype = static_cast<plan::DType>(b.dtype);
      x->bytes = b.bytes;
      x->device = devices_ > 1 ? -1 : 0;  // several GPUs: each device has its own
      pl.buffers.push_back(std::move(x));
    }
    workspace_id_ = static_cast<uint32_t>(pl.buffers.size());
    auto ws = std::make_unique<plan::BufferT>();
    ws->id = workspace_id_;
    ws->name = "workspace";
    ws->kind = plan::BufferKind::workspace;
    ws->layer = -1;
    ws->dtype = plan::DType::I8;
    ws->bytes = a.workspace;
    ws->device = devices_ > 1 ? -1 : 0;
    pl.buffers.push_back(std::move(ws));

    for (const KvSizes& s : kv_sizes(c, m_.mtp_available(), a.context, kv_dtype())) {
      auto k = std::make_unique<plan::KvLayerT>();
      k->layer = s.layer;
      k->kind = s.layer >= c.n_layer ? plan::LayerKind::mtp : static_cast<plan::LayerKind>(c.layer_kind(s.layer));
      k->ratio = s.ratio;
      k->raw_rows = s.raw_rows;
      k->compressed_rows = s.compressed_rows;
      k->index_rows = s.index_rows;
      k->bytes = s.total();
      pl.kv.push_back(std::move(k));
    }
  }

  void kernels_and_phases(plan::PlanT& pl, const Attempt& a) {
    std::map<const KernelInfo*, uint16_t> kidx;
    for (const auto& k : kernel_registry()) {
      if (k.backend != p_.backend) continue;
      kidx[&k] = static_cast<uint16_t>(pl.kernels.size());
      auto e = std::make_unique<plan::KernelEntryT>();
      e->id = k.id;
      e->summary = k.summary;
      e->capturable = k.capturable;
      e->min_cc = k.min_cc;
      pl.kernels.push_back(std::move(e));
    }
    std::map<std::string, uint16_t> notes;
    pl.notes.push_back("");
    notes[""] = 0;
    auto note = [&](const std::string& s) {
      auto [it, added] = notes.emplace(s, static_cast<uint16_t>(pl.notes.size()));
      if (added) pl.notes.push_back(s);
      return it->second;
    };

    for (size_t pi = 0; pi < a.graph.phases.size(); ++pi) {
      const PhaseGraph& g = a.graph.phases[pi];
      const PhaseSelection& s = a.selection[pi];
      auto ph = std::make_unique<plan::PhaseT>();
      ph->kind = static_cast<plan::PhaseKind>(g.kind);
      ph->name = g.name;
      ph->min_tokens = g.min_tokens;
      ph->max_tokens = g.max_tokens;
      ph->predicted_us = s.predicted_us;
      for (size_t ni = 0; ni < g.nodes.size(); ++ni) {
        const GraphNode& n = g.nodes[ni];
        const NodeChoice& ch = s.nodes[ni];
        auto x = std::make_unique<plan::NodeT>();
        x->op = static_cast<plan::OpKind>(n.op);
        x->name = n.name;
        x->layer = n.layer;
        x->kernel = kidx.at(ch.kernel);
        for (const WeightUse& w : n.weights) x->weights.push_back(static_cast<uint32_t>(index_.at(w.tensor)));
        x->inputs = n.inputs;
        x->outputs = n.outputs;
        if (ch.cost.workspace_bytes) x->inputs.push_back(workspace_id_);
        x->tokens = n.shape.tokens;
        const KernelShape& sh = n.shape;
        x->dims = std::make_unique<plan::Dims>(sh.m, sh.k, sh.groups, sh.experts, sh.heads, sh.head_dim, sh.rows);
        const Launch& L = ch.cost.launch;
        x->launch = std::make_unique<plan::Launch>(L.grid[0], L.grid[1], L.grid[2], L.block[0], L.block[1], L.block[2],
                                                   L.smem_bytes);
        x->workspace_bytes = ch.cost.workspace_bytes;
        x->flops = sh.flops;
        x->bytes = sh.weight_bytes + sh.host_weight_bytes + sh.act_bytes;
        x->host_bytes = sh.host_weight_bytes;
        x->predicted_us = static_cast<float>(ch.cost.us);
        x->choice = static_cast<plan::Choice>(ch.choice);
        x->override_index = static_cast<int16_t>(ch.override_index);
        for (const CandidateResult& r : ch.candidates)
          x->candidates.emplace_back(kidx.at(r.kernel), note(r.rejection),
                                     r.rejection.empty() ? static_cast<float>(r.us) : 0.0f);
        x->device = n.device;
        x->parallel = static_cast<plan::Parallel>(n.parallel);
        x->link_bytes = sh.link_bytes;
        x->overlap_prev = o_.pdl && p_.backend == Backend::Cuda && overlap_rejection(*ch.kernel, p_.cc()).empty();
        ph->nodes.push_back(std::move(x));
      }
      for (const PhaseSegment& seg : s.segments) {
        auto x = std::make_unique<plan::SegmentT>();
        x->first = seg.first;
        x->count = seg.count;
        x->stream = seg.stream;
        x->graph = seg.graph;
        ph->segments.push_back(std::move(x));
      }
      pl.phases.push_back(std::move(ph));
    }
  }

  void memory(plan::PlanT& pl, const Attempt& a) {
    auto mm = std::make_unique<plan::MemoryT>();
    mm->usable_bytes = p_.usable_bytes;
    mm->weights_device_bytes = a.placement.device_bytes;
    mm->weights_host_bytes = a.placement.host_bytes;
    mm->kv_bytes = a.kv;
    mm->activation_bytes = a.activations;
    mm->workspace_bytes = a.workspace;
    mm->graph_reserve_bytes = a.reserve;
    mm->total_device_bytes = a.total();
    mm->headroom_bytes = static_cast<int64_t>(p_.usable_bytes) - static_cast<int64_t>(a.total());
    mm->offloaded_tensors = a.placement.host_tensors;
    mm->note = note_.empty() ? "everything on the device" : note_;
    if (devices_ > 1) {
      // The top-level figures sum the devices; each device has its own budget below.
      const uint64_t n = devices_;
      mm->usable_bytes = n * p_.usable_bytes;
      mm->kv_bytes = n * a.kv;
      mm->activation_bytes = n * a.activations;
      mm->workspace_bytes = n * a.workspace;
      mm->graph_reserve_bytes = n * a.reserve;
      mm->total_device_bytes = 0;
      for (uint32_t d = 0; d < devices_; ++d) {
        auto x = std::make_unique<plan::DeviceMemoryT>();
        x->device = static_cast<int32_t>(d);
        x->usable_bytes = p_.usable_bytes;
        x->weights_bytes = a.placement.per_device[d];
        x->kv_bytes = a.kv;
        x->activation_bytes = a.activations;
        x->workspace_bytes = a.workspace;
        x->reserve_bytes = a.reserve;
        x->total_bytes = a.device_total(d);
        x->headroom_bytes = static_cast<int64_t>(p_.usable_bytes) - static_cast<int64_t>(x->total_bytes);
        mm->total_device_bytes += x->total_bytes;
        mm->devices.push_back(std::move(x));
      }
      mm->headroom_bytes = static_cast<int64_t>(mm->usable_bytes) - static_cast<int64_t>(mm->total_device_bytes);
    }
    pl.memory = std::move(mm);
  }

  void parallelism(plan::PlanT& pl, const Attempt& a) {
    if (devices_ <= 1) return;
    auto mode = [](bool split) { return split ? plan::Parallel::tensor_split : plan::Parallel::replicated; };
    auto x = std::make_unique<plan::ParallelismT>();
    x->devices = devices_;
    x->routed_experts = plan::Parallel::expert_split;
    x->attention = mode(a.par.attention_split);
    x->shared_expert = mode(a.par.shared_split);
    x->head = mode(a.par.head_split);
    const ParallelTry& best = tries_.front();
    std::string runner_up;
    for (size_t i = 1; i < tries_.size(); ++i)
      if (tries_[i].fits && !tries_[i].excluded) {
        runner_up = str("; the next best option predicts ", format_us(tries_[i].decode_us));
        break;
      }
    x->reason = str("fastest predicted decode step that fits every device (", format_us(best.decode_us), ")", runner_up);
    for (const ParallelTry& t : tries_) {
      auto o = std::make_unique<plan::ParallelOptionT>();
      o->attention = mode(t.par.attention_split);
      o->shared_expert = mode(t.par.shared_split);
      o->head = mode(t.par.head_split);
      o->decode_us = t.decode_us;
      o->max_device_bytes = t.max_device_bytes;
      o->fits = t.fits;
      o->why_not = t.why_not;
      x->options.push_back(std::move(o));
    }
    pl.parallelism = std::move(x);
  }

  const Model& m_;
  const DeviceProfile& p_;
  const CompileOptions& o_;
  // CompileOptions::kv_dtype resolved: unset means F16 in official numerics, F32 in plain.
  DType kv_dtype() const { return o_.kv_dtype.value_or(o_.numerics == Numerics::official ? DType::F16 : DType::F32); }
  std::vector<ModelTensor> tensors_;
  std::vector<OffloadUnit> units_;
  std::map<const gguf::TensorInfo*, size_t> index_;
  uint64_t requested_ = 0;
  uint32_t devices_ = 1;
  ParallelOptions par_;
  std::vector<ParallelTry> tries_;  // multi-GPU: the options weighed, chosen first
  std::string note_;
  uint32_t workspace_id_ = 0;
};

}  // namespace

std::unique_ptr<plan::PlanT> compile_plan(const Model& model, const DeviceProfile& profile, const CompileOptions& o) {
  return Compiler(model, profile, o).run();
}

}  // namespace fp
