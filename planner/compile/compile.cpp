// The compile driver (see compile.h): fit the model into the device's memory, then
// write down every decision as a plan::PlanT.
#include "planner/compile/compile.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "ops/core/error.h"
#include "planner/graph/op_graph.h"
#include "planner/placement/placement.h"
#include "planner/plan_io/fingerprint.h"
#include "planner/plan_io/plan_view.h"

namespace fp {

namespace {

uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
std::string gib(double bytes) { return format_gib(bytes); }

// One complete try at a (context, offload set): graph, placement, kernels, memory.
struct Attempt {
  uint64_t context = 0, cost_context = 0;
  OpGraph graph;
  WeightPlacement placement;
  std::vector<PhaseSelection> selection;
  uint64_t kv = 0, activations = 0, workspace = 0, reserve = 0;
  uint64_t total() const { return placement.device_bytes + kv + activations + workspace + reserve; }
};

class Compiler {
 public:
  Compiler(const Model& m, const DeviceProfile& p, const CompileOptions& o)
      : m_(m), p_(p), o_(o), tensors_(model_tensors(m)), units_(offload_units(m, tensors_)) {
    for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].info] = i;
  }

  std::unique_ptr<plan::PlanT> run() {
    const ModelConfig& c = m_.config();
    const uint64_t model_ctx = c.context_length ? c.context_length : kDefaultMaxContext;
    requested_ = o_.max_context ? o_.max_context : std::min(model_ctx, kDefaultMaxContext);
    if (requested_ > model_ctx)
      fail("--max-context ", requested_, ": larger than the model's context length ", model_ctx, "; expected at most ",
           model_ctx);
    if (o_.kv_dtype != DType::F32 && o_.kv_dtype != DType::F16)
      fail("--kv-dtype ", dtype_name(o_.kv_dtype), ": expected f32 or f16");
    std::vector<std::string> host(tensors_.size());

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
  GraphOptions graph_options(uint64_t ctx) const {
    GraphOptions g;
    g.max_context = ctx;
    g.cost_context = std::min(ctx, o_.cost_context ? o_.cost_context : kDefaultCostContext);
    g.prefill_buckets = o_.prefill_buckets;
    g.mtp_depth = o_.mtp_depth;
    g.kv_dtype = o_.kv_dtype;
    return g;
  }

  Attempt attempt(uint64_t ctx, const std::vector<std::string>& host) const {
    Attempt a;
    a.context = ctx;
    const GraphOptions go = graph_options(ctx);
    a.cost_context = go.cost_context;
    a.graph = build_op_graph(m_, go);
    a.placement = place_weights(tensors_, host, p_);
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
    a.reserve = p_.backend == Backend::Cuda ? kGraphReserveBytes : 0;
    return a;
  }

  bool fits(const Attempt& a) const {
    if (a.total() > p_.usable_bytes) return false;
    return p_.host_memory_bytes == 0 || a.placement.host_bytes <= p_.host_memory_bytes;
  }

  // Largest context in [1, hi] that fits with the given offload set (0 if none).
  uint64_t largest_fitting(const std::vector<std::string>& host, uint64_t hi) const {
    if (hi == 0 || !fits(attempt(1, host))) return 0;
    uint64_t lo = 1;
    while (lo < hi) {
      const uint64_t mid = lo + (hi - lo + 1) / 2;
      if (fits(attempt(mid, host))) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  std::string no_fit_message(const Attempt& first, std::vector<std::string> host, bool offload) const {
    if (offload)
      for (const OffloadUnit& u : units_)
        for (size_t t : u.tensors) host[t] = "offloaded";
    const Attempt worst = offload ? attempt(requested_, host) : first;
    const double short_bytes = double(worst.total()) - double(p_.usable_bytes);
    std::string s = str(m_.file().path(), " does not fit ", p_.name, ": needs ", gib(double(worst.total())),
                        " of device memory at max context ", requested_, offload ? " with every routed expert in host memory" : "",
                        " (weights ", gib(double(worst.placement.device_bytes)), ", KV ", gib(double(worst.kv)),
                        ", activations ", gib(double(worst.activations)), ", workspace ", gib(double(worst.workspace)),
                        ", graph reserve ", gib(double(worst.reserve)), "), the device has ", gib(double(p_.usable_bytes)),
                        " usable: short by ", gib(std::max(0.0, short_bytes)));
    if (p_.host_memory_bytes && worst.placement.host_bytes > p_.host_memory_bytes)
      s += str("; host memory: needs ", gib(double(worst.placement.host_bytes)), ", host has ",
               gib(double(p_.host_memory_bytes)));
    const uint64_t best = largest_fitting(host, requested_ - 1);
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
    op->kv_dtype = static_cast<plan::DType>(o_.kv_dtype);
    op->prefill_buckets = o_.prefill_buckets;
    op->mtp_depth = o_.mtp_depth;
    op->allow_offload = o_.allow_offload;
    op->fit_context = o_.fit_context;
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
    pl.buffers.push_back(std::move(ws));

    for (const KvSizes& s : kv_sizes(c, m_.mtp_available(), a.context, o_.kv_dtype)) {
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
    pl.memory = std::move(mm);
  }

  const Model& m_;
  const DeviceProfile& p_;
  const CompileOptions& o_;
  std::vector<ModelTensor> tensors_;
  std::vector<OffloadUnit> units_;
  std::map<const gguf::TensorInfo*, size_t> index_;
  uint64_t requested_ = 0;
  std::string note_;
  uint32_t workspace_id_ = 0;
};

}  // namespace

std::unique_ptr<plan::PlanT> compile_plan(const Model& model, const DeviceProfile& profile, const CompileOptions& o) {
  return Compiler(model, profile, o).run();
}

}  // namespace fp
