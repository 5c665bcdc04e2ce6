// Plan diff (see plan_diff.h). Nodes are matched by (phase name, node name), weights by
// tensor name; everything is reported in the order it first appears in plan A.
#include "planner/diff/plan_diff.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "ops/core/error.h"
#include "planner/graph/op_kind.h"
#include "planner/plan_io/plan_view.h"

namespace fp {

namespace {

std::string s_(const flatbuffers::String* s) { return s ? s->str() : ""; }

template <typename T>
std::string num(T v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

std::string list_u32(const flatbuffers::Vector<uint32_t>* v) {
  std::string s;
  if (v)
    for (uint32_t x : *v) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

std::string overrides(const plan::Options* o) {
  std::string s;
  if (o->overrides())
    for (const auto* x : *o->overrides()) s += (s.empty() ? "" : " ") + s_(x->pattern()) + "=" + s_(x->kernel());
  return s.empty() ? "(none)" : s;
}

void fields(PlanDiff& d, const plan::Plan& a, const plan::Plan& b) {
  auto f = [&](const char* section, const char* name, const std::string& x, const std::string& y) {
    if (x != y) d.fields.push_back({section, name, x, y});
  };
  f("provenance", "format_version", num(a.provenance()->format_version()), num(b.provenance()->format_version()));
  f("provenance", "planner_version", s_(a.provenance()->planner_version()), s_(b.provenance()->planner_version()));
  f("model", "file", s_(a.model()->file()), s_(b.model()->file()));
  f("model", "fingerprint", s_(a.model()->fingerprint()), s_(b.model()->fingerprint()));
  f("model", "mtp_fingerprint", s_(a.model()->mtp_fingerprint()), s_(b.model()->mtp_fingerprint()));
  f("model", "layers", num(a.model()->config()->n_layer()), num(b.model()->config()->n_layer()));
  const auto *da = a.device(), *db = b.device();
  f("device", "name", s_(da->name()), s_(db->name()));
  f("device", "backend", plan::EnumNameBackend(da->backend()), plan::EnumNameBackend(db->backend()));
  f("device", "compute_capability", num(da->cc_major()) + "." + num(da->cc_minor()),
    num(db->cc_major()) + "." + num(db->cc_minor()));
  f("device", "sm_count", num(da->sm_count()), num(db->sm_count()));
  f("device", "usable_bytes", num(da->usable_bytes()), num(db->usable_bytes()));
  f("device", "bandwidth_gbps", num(da->bandwidth_gbps()), num(db->bandwidth_gbps()));
  f("device", "measured_bandwidth_gbps", num(da->measured_bandwidth_gbps()), num(db->measured_bandwidth_gbps()));
  f("device", "host_link_gbps", num(da->measured_pcie_gbps() > 0 ? da->measured_pcie_gbps() : da->pcie_gbps()),
    num(db->measured_pcie_gbps() > 0 ? db->measured_pcie_gbps() : db->pcie_gbps()));
  f("device", "gpus", num(da->gpus()), num(db->gpus()));
  f("device", "gpu_link_gbps", num(da->host_link_gbps()), num(db->host_link_gbps()));
  f("device", "collective_latency_us", num(da->collective_latency_us()), num(db->collective_latency_us()));
  auto par = [](const plan::Plan& p, int part) -> std::string {
    const auto* x = p.parallelism();
    if (!x) return "single";
    const plan::Parallel v = part == 0 ? x->routed_experts() : part == 1 ? x->attention() : part == 2 ? x->shared_expert() : x->head();
    return plan::EnumNameParallel(v);
  };
  f("parallelism", "routed_experts", par(a, 0), par(b, 0));
  f("parallelism", "attention", par(a, 1), par(b, 1));
  f("parallelism", "shared_expert", par(a, 2), par(b, 2));
  f("parallelism", "head", par(a, 3), par(b, 3));
  f("device", "measured_kernels", num(da->measured() ? da->measured()->size() : 0),
    num(db->measured() ? db->measured()->size() : 0));
  const auto *oa = a.provenance()->options(), *ob = b.provenance()->options();
  f("options", "max_context", num(oa->max_context()), num(ob->max_context()));
  f("options", "requested_context", num(oa->requested_context()), num(ob->requested_context()));
  f("options", "numerics", plan::EnumNameNumerics(a.numerics()), plan::EnumNameNumerics(b.numerics()));
  f("options", "kv_dtype", plan::EnumNameDType(oa->kv_dtype()), plan::EnumNameDType(ob->kv_dtype()));
  f("options", "prefill_buckets", list_u32(oa->prefill_buckets()), list_u32(ob->prefill_buckets()));
  f("options", "mtp_depth", num(oa->mtp_depth()), num(ob->mtp_depth()));
  f("options", "cost_context", num(oa->cost_context()), num(ob->cost_context()));
  f("options", "allow_offload", num(oa->allow_offload()), num(ob->allow_offload()));
  f("options", "fit_context", num(oa->fit_context()), num(ob->fit_context()));
  f("options", "exact_parallel", num(oa->exact_parallel()), num(ob->exact_parallel()));
  f("options", "pdl", num(oa->pdl()), num(ob->pdl()));
  f("options", "overrides", overrides(oa), overrides(ob));
}

void phases(PlanDiff& d, const plan::Plan& a, const plan::Plan& b) {
  std::map<std::string, const plan::Phase*> pb;
  for (const auto* ph : *b.phases()) pb[ph->name()->str()] = ph;
  std::map<std::string, bool> seen;
  // (phase, role, from, to) -> layers, folded over layers first.
  struct PerPhase {
    std::string phase, role, from, to;
    std::vector<int> layers;
    bool model_level = false;
  };
  std::vector<PerPhase> changes, launches;  // kernel choices; overlap_prev
  std::map<std::string, size_t> at, launch_at;
  auto launch = [](const plan::Node* n) { return std::string(n->overlap_prev() ? "pdl" : "plain"); };
  std::map<std::string, size_t> par_at;
  std::map<std::string, std::map<int, bool>> par_layers;
  auto where = [](const plan::Node* n) {
    std::string s = plan::EnumNameParallel(n->parallel());
    if (n->parallel() == plan::Parallel::single) s += "@" + std::to_string(n->device());
    return s;
  };
  auto collectives = [](const plan::Phase* ph, uint32_t& reduce, uint32_t& gather, double& us, double& bytes) {
    for (const auto* n : *ph->nodes()) {
      if (n->op() == plan::OpKind::all_reduce) ++reduce;
      else if (n->op() == plan::OpKind::all_gather) ++gather;
      else continue;
      us += n->predicted_us();
      bytes += n->link_bytes();
    }
  };
  for (const auto* pa : *a.phases()) {
    const std::string name = pa->name()->str();
    auto it = pb.find(name);
    if (it == pb.end()) {
      d.phases_only_a.push_back(name);
      continue;
    }
    seen[name] = true;
    const plan::Phase* q = it->second;
    std::map<std::string, const plan::Node*> nb;
    for (const auto* n : *q->nodes()) nb[n->name()->str()] = n;
    PlanDiff::NodeSets sets{name, {}, {}};
    std::map<std::string, bool> matched;
    for (const auto* n : *pa->nodes()) {
      const std::string nn = n->name()->str();
      auto m = nb.find(nn);
      if (m == nb.end()) {
        sets.only_a.push_back(nn);
        continue;
      }
      matched[nn] = true;
      if (where(n) != where(m->second)) {
        const std::string role = node_role(nn);
        const std::string key = role + "|" + where(n) + "|" + where(m->second);
        auto c = par_at.find(key);
        if (c == par_at.end()) {
          c = par_at.emplace(key, d.parallel.size()).first;
          d.parallel.push_back({role, {}, where(n), where(m->second)});
        }
        if (layer_of(nn) >= 0 && !par_layers[key][layer_of(nn)]) {
          par_layers[key][layer_of(nn)] = true;
          d.parallel[c->second].layers.push_back(layer_of(nn));
        }
      }
      if (n->overlap_prev() != m->second->overlap_prev()) {
        const std::string role = node_role(nn);
        const std::string key = name + "|" + role + "|" + launch(n) + "|" + launch(m->second);
        auto c = launch_at.find(key);
        if (c == launch_at.end()) {
          c = launch_at.emplace(key, launches.size()).first;
          launches.push_back({name, role, launch(n), launch(m->second), {}, layer_of(nn) < 0});
        }
        if (layer_of(nn) >= 0) launches[c->second].layers.push_back(layer_of(nn));
      }
      const std::string ka = a.kernels()->Get(n->kernel())->id()->str();
      const std::string kb = b.kernels()->Get(m->second->kernel())->id()->str();
      if (ka == kb) continue;
      const std::string role = node_role(nn);
      const std::string key = name + "|" + role + "|" + ka + "|" + kb;
      auto c = at.find(key);
      if (c == at.end()) {
        c = at.emplace(key, changes.size()).first;
        changes.push_back({name, role, ka, kb, {}, layer_of(nn) < 0});
      }
      if (layer_of(nn) >= 0) changes[c->second].layers.push_back(layer_of(nn));
    }
    for (const auto* n : *q->nodes())
      if (!matched.count(n->name()->str())) sets.only_b.push_back(n->name()->str());
    // Collectives are reported on their own (below), and the moe_combine after the experts'
    // all-reduce goes with them; other nodes present in one plan only here.
    auto drop_collectives = [&](std::vector<std::string>& v, const plan::Phase* ph) {
      std::map<std::string, bool> coll;
      for (const auto* n : *ph->nodes())
        if (is_multi_gpu_only(OpKind(uint8_t(n->op())))) coll[n->name()->str()] = true;
      v.erase(std::remove_if(v.begin(), v.end(), [&](const std::string& x) { return coll.count(x) > 0; }), v.end());
    };
    drop_collectives(sets.only_a, pa);
    drop_collectives(sets.only_b, q);
    if (!sets.only_a.empty() || !sets.only_b.empty()) d.node_sets.push_back(std::move(sets));
    PlanDiff::Collectives co{name};
    collectives(pa, co.a_reduce, co.a_gather, co.a_us, co.a_bytes);
    collectives(q, co.b_reduce, co.b_gather, co.b_us, co.b_bytes);
    if (co.a_reduce != co.b_reduce || co.a_gather != co.b_gather || co.a_us != co.b_us || co.a_bytes != co.b_bytes)
      d.collectives.push_back(co);

    // Segments: CUDA graphs and nodes run outside graphs.
    PlanDiff::SegmentChange sc{name, 0, 0, 0, 0};
    for (const auto* s : *pa->segments()) (s->graph() ? sc.a_graphs : sc.a_host)++;
    for (const auto* s : *q->segments()) (s->graph() ? sc.b_graphs : sc.b_host)++;
    bool same = pa->segments()->size() == q->segments()->size();
    for (size_t i = 0; same && i < pa->segments()->size(); ++i) {
      const auto *x = pa->segments()->Get(i), *y = q->segments()->Get(i);
      same = x->first() == y->first() && x->count() == y->count() && x->graph() == y->graph() && x->stream() == y->stream();
    }
    if (!same) d.segments.push_back(sc);
    if (pa->predicted_us() != q->predicted_us()) d.times.push_back({name, pa->predicted_us(), q->predicted_us()});
  }
  for (const auto* ph : *b.phases())
    if (!seen.count(ph->name()->str())) d.phases_only_b.push_back(ph->name()->str());

  // Fold identical (role, layers, from, to) changes across phases.
  auto fold = [](const std::vector<PerPhase>& in, std::vector<PlanDiff::KernelChange>& out) {
    std::map<std::string, size_t> merged;
    for (const auto& c : in) {
      const std::string key = c.role + "|" + format_layers(c.layers) + "|" + c.from + "|" + c.to;
      auto m = merged.find(key);
      if (m == merged.end()) {
        merged.emplace(key, out.size());
        out.push_back({{c.phase}, c.role, c.layers, c.from, c.to});
      } else {
        out[m->second].phases.push_back(c.phase);
      }
    }
  };
  fold(changes, d.kernels);
  fold(launches, d.launches);
}

void placements(PlanDiff& d, const plan::Plan& a, const plan::Plan& b) {
  std::map<std::string, const plan::Weight*> wb;
  for (const auto* w : *b.weights()) wb[w->name()->str()] = w;
  std::map<std::string, size_t> at;
  std::map<std::string, bool> matched;
  for (const auto* w : *a.weights()) {
    const std::string name = w->name()->str();
    auto m = wb.find(name);
    if (m == wb.end()) {
      ++d.weights_only_a;
      continue;
    }
    matched[name] = true;
    auto where = [](const plan::Weight* x) {
      std::string s = plan::EnumNamePlacement(x->placement());
      if (x->slices() && x->slices()->size() > 0) {
        const auto axis = x->slices()->Get(0)->axis();
        const std::string n = std::to_string(x->slices()->size());
        return axis == plan::SliceAxis::whole   ? "on each of " + n + " devices"
               : axis == plan::SliceAxis::outer ? "split over " + n + " devices (outer dim)"
                                                : "split over " + n + " devices (columns)";
      }
      if (x->device() != 0) s += "@" + std::to_string(x->device());
      return s;
    };
    const std::string from = where(w), to = where(m->second);
    if (from == to) continue;
    const std::string role = weight_role(name);
    const std::string key = role + "|" + from + "|" + to;
    auto c = at.find(key);
    if (c == at.end()) {
      c = at.emplace(key, d.placements.size()).first;
      d.placements.push_back({role, {}, from, to, 0});
    }
    if (layer_of(name) >= 0) d.placements[c->second].layers.push_back(layer_of(name));
    d.placements[c->second].bytes += double(w->bytes());
  }
  for (const auto* w : *b.weights())
    if (!matched.count(w->name()->str())) ++d.weights_only_b;
}

void memory(PlanDiff& d, const plan::Plan& a, const plan::Plan& b) {
  const auto *x = a.memory(), *y = b.memory();
  auto m = [&](const char* name, double p, double q) {
    if (p != q) d.memory.push_back({name, p, q});
  };
  m("usable", double(x->usable_bytes()), double(y->usable_bytes()));
  m("weights on device", double(x->weights_device_bytes()), double(y->weights_device_bytes()));
  m("weights in host memory", double(x->weights_host_bytes()), double(y->weights_host_bytes()));
  m("KV cache", double(x->kv_bytes()), double(y->kv_bytes()));
  m("activations", double(x->activation_bytes()), double(y->activation_bytes()));
  m("workspace", double(x->workspace_bytes()), double(y->workspace_bytes()));
  m("graph reserve", double(x->graph_reserve_bytes()), double(y->graph_reserve_bytes()));
  m("total on device", double(x->total_device_bytes()), double(y->total_device_bytes()));
  m("headroom", double(x->headroom_bytes()), double(y->headroom_bytes()));
  // Per device (a one-GPU plan's device 0 is the whole plan).
  const size_t nx = x->devices() ? x->devices()->size() : 1, ny = y->devices() ? y->devices()->size() : 1;
  if (nx > 1 || ny > 1)
    for (size_t i = 0; i < std::max(nx, ny); ++i) {
      auto total = [&](const plan::Memory* mm, size_t n, bool head) -> double {
        if (i >= n) return 0;
        if (!mm->devices() || mm->devices()->size() == 0) return head ? double(mm->headroom_bytes()) : double(mm->total_device_bytes());
        const auto* dv = mm->devices()->Get(uint32_t(i));
        return head ? double(dv->headroom_bytes()) : double(dv->total_bytes());
      };
      m(str("device ", i, " total").c_str(), total(x, nx, false), total(y, ny, false));
      m(str("device ", i, " headroom").c_str(), total(x, nx, true), total(y, ny, true));
    }
}

std::string layers_text(const std::vector<int>& layers, const std::string& role) {
  if (layers.empty()) return role;
  return "blk." + format_layers(layers) + " " + role;
}

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

std::string signed_bytes(double bytes) { return (bytes >= 0 ? "+" : "") + format_bytes(bytes); }

}  // namespace

PlanDiff diff_plans(const LoadedPlan& a, const LoadedPlan& b) {
  PlanDiff d;
  fields(d, *a, *b);
  phases(d, *a, *b);
  placements(d, *a, *b);
  memory(d, *a, *b);
  return d;
}

std::string diff_to_text(const PlanDiff& d, const std::string& an, const std::string& bn) {
  std::ostringstream o;
  o << "--- " << an << "\n+++ " << bn << "\n";
  if (d.equal()) {
    o << "plans are equal in meaning\n";
    return o.str();
  }
  std::string section;
  for (const auto& f : d.fields) {
    if (f.section != section) o << (section.empty() ? "" : "\n") << f.section << "\n";
    section = f.section;
    o << "  " << f.name << ": " << (f.a.empty() ? "(none)" : f.a) << " -> " << (f.b.empty() ? "(none)" : f.b) << "\n";
  }
  if (!d.phases_only_a.empty()) o << "\nphases only in A: " << join(d.phases_only_a) << "\n";
  if (!d.phases_only_b.empty()) o << "\nphases only in B: " << join(d.phases_only_b) << "\n";
  for (const auto& s : d.node_sets)
    o << "\nnodes of " << s.phase << ": " << s.only_a.size() << " only in A" << (s.only_a.empty() ? "" : " (" + s.only_a[0] + ", ...)")
      << ", " << s.only_b.size() << " only in B" << (s.only_b.empty() ? "" : " (" + s.only_b[0] + ", ...)") << "\n";
  if (!d.kernels.empty()) {
    o << "\nkernel choices\n";
    for (const auto& k : d.kernels)
      o << "  " << join(k.phases) << ": " << layers_text(k.layers, k.role) << ": " << k.from << " -> " << k.to << "\n";
  }
  if (!d.launches.empty()) {
    o << "\nlaunch (pdl: starts while the previous kernel finishes)\n";
    for (const auto& k : d.launches)
      o << "  " << join(k.phases) << ": " << layers_text(k.layers, k.role) << ": " << k.from << " -> " << k.to << "\n";
  }
  if (!d.placements.empty() || d.weights_only_a || d.weights_only_b) {
    o << "\nplacement\n";
    for (const auto& p : d.placements)
      o << "  " << layers_text(p.layers, p.role) << " (" << format_bytes(p.bytes) << "): " << p.from << " -> " << p.to << "\n";
    if (d.weights_only_a || d.weights_only_b)
      o << "  tensors only in A: " << d.weights_only_a << ", only in B: " << d.weights_only_b << "\n";
  }
  if (!d.parallel.empty()) {
    o << "\nhow nodes run across devices\n";
    for (const auto& p : d.parallel) o << "  " << layers_text(p.layers, p.role) << ": " << p.from << " -> " << p.to << "\n";
  }
  if (!d.collectives.empty()) {
    o << "\ncollectives per step\n";
    for (const auto& c : d.collectives)
      o << "  " << c.phase << ": " << c.a_reduce << " all_reduce + " << c.a_gather << " all_gather (" << format_bytes(c.a_bytes)
        << ", " << format_us(c.a_us) << ") -> " << c.b_reduce << " all_reduce + " << c.b_gather << " all_gather ("
        << format_bytes(c.b_bytes) << ", " << format_us(c.b_us) << ")\n";
  }
  if (!d.segments.empty()) {
    o << "\ngraph segments\n";
    for (const auto& s : d.segments)
      o << "  " << s.phase << ": " << s.a_graphs << " graph(s) + " << s.a_host << " outside -> " << s.b_graphs
        << " graph(s) + " << s.b_host << " outside\n";
  }
  if (!d.memory.empty()) {
    o << "\nmemory\n";
    for (const auto& m : d.memory)
      o << "  " << m.name << ": " << format_bytes(m.a) << " -> " << format_bytes(m.b) << " (" << signed_bytes(m.b - m.a) << ")\n";
  }
  if (!d.times.empty()) {
    o << "\npredicted time per step\n";
    for (const auto& t : d.times) {
      char pct[32];
      std::snprintf(pct, sizeof pct, "%+.1f%%", t.a > 0 ? (t.b - t.a) / t.a * 100 : 0.0);
      o << "  " << t.name << ": " << format_us(t.a) << " -> " << format_us(t.b) << " (" << pct << ")\n";
    }
  }
  return o.str();
}

nlohmann::json diff_to_json(const PlanDiff& d, const std::string& an, const std::string& bn) {
  using nlohmann::json;
  json j;
  j["a"] = an;
  j["b"] = bn;
  j["equal"] = d.equal();
  j["fields"] = json::array();
  for (const auto& f : d.fields) j["fields"].push_back({{"section", f.section}, {"name", f.name}, {"a", f.a}, {"b", f.b}});
  j["phases_only_a"] = d.phases_only_a;
  j["phases_only_b"] = d.phases_only_b;
  j["node_sets"] = json::array();
  for (const auto& s : d.node_sets) j["node_sets"].push_back({{"phase", s.phase}, {"only_a", s.only_a}, {"only_b", s.only_b}});
  j["kernels"] = json::array();
  for (const auto& k : d.kernels)
    j["kernels"].push_back({{"phases", k.phases}, {"role", k.role}, {"layers", k.layers},
                            {"layers_text", format_layers(k.layers)}, {"from", k.from}, {"to", k.to}});
  j["launches"] = json::array();
  for (const auto& k : d.launches)
    j["launches"].push_back({{"phases", k.phases}, {"role", k.role}, {"layers", k.layers},
                             {"layers_text", format_layers(k.layers)}, {"from", k.from}, {"to", k.to}});
  j["placements"] = json::array();
  for (const auto& p : d.placements)
    j["placements"].push_back({{"role", p.role}, {"layers", p.layers}, {"layers_text", format_layers(p.layers)},
                               {"from", p.from}, {"to", p.to}, {"bytes", p.bytes}});
  j["weights_only_a"] = d.weights_only_a;
  j["weights_only_b"] = d.weights_only_b;
  j["parallel"] = json::array();
  for (const auto& p : d.parallel)
    j["parallel"].push_back({{"role", p.role}, {"layers", p.layers}, {"layers_text", format_layers(p.layers)},
                             {"from", p.from}, {"to", p.to}});
  j["collectives"] = json::array();
  for (const auto& c : d.collectives)
    j["collectives"].push_back({{"phase", c.phase}, {"a_all_reduce", c.a_reduce}, {"a_all_gather", c.a_gather},
                                {"a_bytes", c.a_bytes}, {"a_us", c.a_us}, {"b_all_reduce", c.b_reduce},
                                {"b_all_gather", c.b_gather}, {"b_bytes", c.b_bytes}, {"b_us", c.b_us}});
  j["segments"] = json::array();
  for (const auto& s : d.segments)
    j["segments"].push_back({{"phase", s.phase}, {"a_graphs", s.a_graphs}, {"a_outside", s.a_host},
                             {"b_graphs", s.b_graphs}, {"b_outside", s.b_host}});
  j["memory"] = json::array();
  for (const auto& m : d.memory) j["memory"].push_back({{"name", m.name}, {"a_bytes", m.a}, {"b_bytes", m.b}});
  j["predicted_us"] = json::array();
  for (const auto& t : d.times) j["predicted_us"].push_back({{"phase", t.name}, {"a", t.a}, {"b", t.b}});
  return j;
}

}  // namespace fp
