// Plan settings, device matching and the graph comparison (see plan_binding.h).
#include "runtime/plan/plan_binding.h"

#include <algorithm>
#include <cmath>

#include "ops/core/error.h"
#include "planner/plan_io/plan_view.h"
#include "planner/profile/probed_profile.h"

namespace fp {

PlanSettings plan_settings(const LoadedPlan& p) {
  PlanSettings s;
  s.backend = p->device()->backend() == plan::Backend::cuda ? Backend::Cuda : Backend::Cpu;
  s.device = p->device()->name()->str();
  s.numerics = p->numerics() == plan::Numerics::plain ? Numerics::plain : Numerics::official;
  const plan::Options* o = p->provenance()->options();
  s.max_context = o->max_context();
  if (o->prefill_buckets())
    for (uint32_t b : *o->prefill_buckets()) s.prefill_buckets.push_back(b);
  s.max_step = s.prefill_buckets.empty() ? 1 : s.prefill_buckets.back();
  bool mtp = false;
  for (const plan::Phase* ph : *p->phases()) mtp |= ph->kind() == plan::PhaseKind::mtp_draft;
  s.mtp_depth = mtp ? o->mtp_depth() : 0;
  return s;
}

void check_options_against_plan(const LoadedPlan& p, Numerics numerics, int64_t max_context, int64_t max_step) {
  const PlanSettings s = plan_settings(p);
  if (numerics != s.numerics)
    fail(p.path, ": numerics ", numerics_name(numerics), " asked for, the plan fixes ", numerics_name(s.numerics));
  if (uint64_t(max_context) != s.max_context)
    fail(p.path, ": max context ", max_context, " asked for, the plan fixes ", s.max_context);
  if (uint64_t(max_step) > s.max_step)
    fail(p.path, ": prefill chunk ", max_step, " asked for, the plan's largest prefill bucket is ", s.max_step);
}

GraphOptions plan_graph_options(const LoadedPlan& p) {
  const plan::Options* o = p->provenance()->options();
  GraphOptions g;
  g.max_context = o->max_context();
  g.cost_context = o->cost_context();
  g.prefill_buckets.clear();
  if (o->prefill_buckets())
    for (uint32_t b : *o->prefill_buckets()) g.prefill_buckets.push_back(b);
  g.mtp_depth = o->mtp_depth();
  g.kv_dtype = static_cast<DType>(o->kv_dtype());
  if (const plan::Parallelism* par = p->parallelism()) {  // multi-GPU plans: the split the compiler chose
    g.par.devices = par->devices();
    g.par.attention_split = par->attention() == plan::Parallel::tensor_split;
    g.par.shared_split = par->shared_expert() == plan::Parallel::tensor_split;
    g.par.head_split = par->head() == plan::Parallel::tensor_split;
  }
  return g;
}

// =============================================================================
// Devices
// =============================================================================

namespace {

std::string describe(const plan::Device& d) {
  return str(d.name()->str(), " (", d.backend() == plan::Backend::cuda ? "cuda" : "cpu", " backend",
             d.backend() == plan::Backend::cuda
                 ? str(", cc ", d.cc_major(), ".", d.cc_minor(), ", ", d.sm_count(), " SMs, ", format_gib(double(d.memory_bytes())))
                 : std::string(),
             ")");
}

}  // namespace

bool plan_device_is(const plan::Device& d, const GpuIdentity& g) {
  if (d.backend() != plan::Backend::cuda || d.cc_major() != g.cc_major || d.cc_minor() != g.cc_minor) return false;
  if (d.name()->str() == profile_name_for(g.name)) return true;
  if (d.sm_count() != g.sm_count || g.total_bytes == 0) return false;
  return std::fabs(double(d.memory_bytes()) - double(g.total_bytes)) / double(g.total_bytes) <= 0.03;
}

void check_plan_for_cpu(const LoadedPlan& p, const gguf::File& model, const gguf::File* mtp) {
  const plan::Device& d = *p->device();
  check_plan_matches(p, model, d.name()->str(), 0, mtp);  // model and MTP file first
  if (d.backend() != plan::Backend::cpu)
    fail(p.path, ": compiled for device ", describe(d),
         ", this is the CPU reference executor (--backend cpu); compile the plan with a cpu profile "
         "(plans/devices/cpu.yaml) or run it with --backend cuda");
}

namespace {

void check_gpu(const LoadedPlan& p, const GpuIdentity& g, const std::string& which) {
  const plan::Device& d = *p->device();
  if (plan_device_is(d, g)) return;
  fail(p.path, ": compiled for device ", describe(d), ", ", which, " is ", g.name, " (", profile_name_for(g.name),
       ", cc ", g.cc_major, ".", g.cc_minor, ", ", g.sm_count, " SMs, ", format_gib(double(g.total_bytes)),
       "); a plan runs on the GPU whose probe name it carries or whose compute capability, SM count and memory "
       "(within 3%) its profile states; recompile with this GPU's profile (`flashplan probe`)");
}

}  // namespace

void check_plan_for_gpu(const LoadedPlan& p, const gguf::File& model, const gguf::File* mtp, const GpuIdentity& g) {
  const plan::Device& d = *p->device();
  // The single-GPU engine has one executor; a plan over several GPUs runs in the
  // multi-device engine (the commands pick it from the plan).
  if (d.gpus() > 1)
    fail(p.path, ": plan for ", d.gpus(), " GPUs: the single-GPU CUDA engine runs plans for one GPU; run it "
         "with the multi-device engine (runtime/cuda/multi_device.h)");
  check_plan_matches(p, model, d.name()->str(), 0, mtp);
  check_gpu(p, g, "this GPU");
}

void check_plan_for_gpus(const LoadedPlan& p, const gguf::File& model, const gguf::File* mtp,
                         const std::vector<GpuIdentity>& gpus) {
  const uint32_t n = std::max<uint32_t>(p->device()->gpus(), 1);
  check_plan_matches(p, model, p->device()->name()->str(), 0, mtp);
  if (gpus.size() < n)
    fail(p.path, ": plan for ", n, " GPUs, ", gpus.size(), " visible (CUDA_VISIBLE_DEVICES and the host's GPUs "
         "decide); compile for this host's GPU count (a profile with host.gpus: ", gpus.size(), ")");
  for (uint32_t i = 0; i < n; ++i) check_gpu(p, gpus[i], str("GPU ", i));
}

// =============================================================================
// Graph comparison
// =============================================================================

namespace {

template <typename A, typename B>
std::string differ(const std::string& where, const char* field, const A& plan_v, const B& graph_v) {
  return str(where, ": ", field, " ", plan_v, " in the plan, ", graph_v, " in this build's op graph");
}

// A node's buffer list; `skip_workspace`: without the workspace buffer the compiler adds
// to the inputs of a kernel that needs one (planner/compile), which the op graph lacks.
std::string list(const LoadedPlan& p, const flatbuffers::Vector<uint32_t>* v, bool skip_workspace) {
  std::string s = "[";
  bool first = true;
  if (v)
    for (uint32_t id : *v) {
      if (skip_workspace && p->buffers()->Get(id)->kind() == plan::BufferKind::workspace) continue;
      s += (first ? "" : ",") + std::to_string(id);
      first = false;
    }
  return s + "]";
}
std::string list(const std::vector<uint32_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

}  // namespace

std::string first_graph_difference(const LoadedPlan& p, const OpGraph& g) {
  const auto& pb = *p->buffers();
  if (pb.size() < g.buffers.size()) return differ("buffers", "count", pb.size(), g.buffers.size());
  for (size_t i = 0; i < g.buffers.size(); ++i) {
    const plan::Buffer& a = *pb.Get(uint32_t(i));
    const GraphBuffer& b = g.buffers[i];
    const std::string where = str("buffer ", i, " (", b.name, ")");
    if (a.name()->str() != b.name) return differ(where, "name", a.name()->str(), b.name);
    if (uint8_t(a.kind()) != uint8_t(b.kind)) return differ(where, "kind", int(a.kind()), int(b.kind));
    if (a.layer() != b.layer) return differ(where, "layer", a.layer(), b.layer);
    if (a.bytes() != b.bytes) return differ(where, "bytes", a.bytes(), b.bytes);
  }
  const auto& phases = *p->phases();
  if (phases.size() != g.phases.size()) return differ("phases", "count", phases.size(), g.phases.size());
  for (uint32_t pi = 0; pi < phases.size(); ++pi) {
    const plan::Phase& a = *phases.Get(pi);
    const PhaseGraph& b = g.phases[pi];
    const std::string pw = str("phase ", pi, " (", b.name, ")");
    if (a.name()->str() != b.name) return differ(pw, "name", a.name()->str(), b.name);
    if (uint8_t(a.kind()) != uint8_t(b.kind)) return differ(pw, "kind", int(a.kind()), int(b.kind));
    if (a.min_tokens() != b.min_tokens || a.max_tokens() != b.max_tokens)
      return differ(pw, "tokens", str(a.min_tokens(), "-", a.max_tokens()), str(b.min_tokens, "-", b.max_tokens));
    const auto& nodes = *a.nodes();
    if (nodes.size() != b.nodes.size()) return differ(pw, "node count", nodes.size(), b.nodes.size());
    for (uint32_t ni = 0; ni < nodes.size(); ++ni) {
      const plan::Node& x = *nodes.Get(ni);
      const GraphNode& y = b.nodes[ni];
      const std::string nw = str(pw, " node ", ni, " (", y.name, ")");
      if (x.name()->str() != y.name) return differ(nw, "name", x.name()->str(), y.name);
      if (uint8_t(x.op()) != uint8_t(y.op))
        return differ(nw, "op", op_kind_name(OpKind(uint8_t(x.op()))), op_kind_name(y.op));
      if (x.layer() != y.layer) return differ(nw, "layer", x.layer(), y.layer);
      if (x.tokens() != y.shape.tokens) return differ(nw, "tokens", x.tokens(), y.shape.tokens);
      const std::string in = list(p, x.inputs(), true), out = list(p, x.outputs(), false);
      if (in != list(y.inputs)) return differ(nw, "inputs (without the workspace)", in, list(y.inputs));
      if (out != list(y.outputs)) return differ(nw, "outputs", out, list(y.outputs));
      const uint32_t nw_plan = x.weights() ? x.weights()->size() : 0;
      if (nw_plan != y.weights.size()) return differ(nw, "weight count", nw_plan, y.weights.size());
      for (uint32_t wi = 0; wi < nw_plan; ++wi) {
        const std::string pw_name = p->weights()->Get(x.weights()->Get(wi))->name()->str();
        if (pw_name != y.weights[wi].tensor->name) return differ(nw, "weight", pw_name, y.weights[wi].tensor->name);
      }
      const plan::Dims* d = x.dims();
      if (d && (d->m() != y.shape.m || d->k() != y.shape.k || d->groups() != y.shape.groups ||
                d->experts() != y.shape.experts || d->heads() != y.shape.heads || d->head_dim() != y.shape.head_dim))
        return differ(nw, "dims (m,k,groups,experts,heads,head_dim)",
                      str(d->m(), ",", d->k(), ",", d->groups(), ",", d->experts(), ",", d->heads(), ",", d->head_dim()),
                      str(y.shape.m, ",", y.shape.k, ",", y.shape.groups, ",", y.shape.experts, ",", y.shape.heads, ",",
                          y.shape.head_dim));
    }
  }
  return "";
}

OpGraph plan_op_graph(const LoadedPlan& p, const Model& m) {
  OpGraph g = build_op_graph(m, plan_graph_options(p));
  const std::string diff = first_graph_difference(p, g);
  if (!diff.empty()) fail(p.path, ": the plan's node lists differ from this build's op graph: ", diff);
  return g;
}

const plan::Phase* phase_for_step(const LoadedPlan& p, uint32_t n) {
  const plan::Phase* bucket = nullptr;
  for (const plan::Phase* ph : *p->phases()) {
    if (n == 1 && ph->kind() == plan::PhaseKind::decode) return ph;
    if (!bucket && ph->kind() == plan::PhaseKind::prefill && ph->min_tokens() <= n && n <= ph->max_tokens()) bucket = ph;
  }
  return bucket;
}

}  // namespace fp
