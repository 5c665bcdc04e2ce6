// `flashplan inspect PLAN` for people: provenance, memory budget, placement, KV cache,
// a summary line per phase, then per phase a table of nodes in execution order with
// layers that made the same choice folded into one row ("attn_q_b 0-42 ..."); "[pdl]"
// marks nodes launched with programmatic dependent launch (Node.overlap_prev).
#include "planner/plan_io/plan_text.h"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <map>

#include "ops/core/error.h"
#include "planner/plan_io/plan_view.h"

namespace fp {

namespace {

class Out {
 public:
  void operator()(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    s += buf;
  }
  std::string s;
};

const char* sv(const flatbuffers::String* s) { return s ? s->c_str() : ""; }

std::string kernel(const plan::Plan& p, uint16_t i) { return p.kernels()->Get(i)->id()->str(); }

void header(Out& o, const LoadedPlan& lp) {
  const plan::Plan& p = *lp;
  const auto* pv = p.provenance();
  const auto* op = pv->options();
  const auto* m = p.model();
  const auto* c = m->config();
  const auto* d = p.device();
  o("plan      %s (format %u, flashplan %s)\n", lp.path.c_str(), pv->format_version(), sv(pv->planner_version()));
  int swa = 0, csa = 0, hca = 0;
  if (c->compress_ratios())
    for (uint32_t r : *c->compress_ratios()) (r == 0 ? swa : r == 4 ? csa : hca)++;
  o("model     %s  fingerprint %s\n", sv(m->file()), std::string(sv(m->fingerprint())).substr(0, 16).c_str());
  o("          %s%s%s: %u layers (%d SWA, %d CSA, %d HCA), %u experts (%u used, %u hash-routed layers), MTP %s\n",
    sv(c->arch()), c->name() && c->name()->size() ? " " : "", sv(c->name()), c->n_layer(), swa, csa, hca, c->n_expert(),
    c->n_expert_used(), c->hash_layer_count(), plan::EnumNameMtpLayout(c->mtp()));
  o("          %u tensors, %s of weights\n", m->tensor_count(), format_gib(double(m->tensor_bytes())).c_str());
  if (d->backend() == plan::Backend::cuda) {
    o("device    %s (%s): cc %u.%u, %u SMs, %s usable, %.0f GB/s", sv(d->name()), sv(d->description()), d->cc_major(),
      d->cc_minor(), d->sm_count(), format_gib(double(d->usable_bytes())).c_str(), d->bandwidth_gbps());
    if (d->measured_bandwidth_gbps() > 0) o(" (measured %.0f)", d->measured_bandwidth_gbps());
    o(", host link %.0f GB/s", d->measured_pcie_gbps() > 0 ? d->measured_pcie_gbps() : d->pcie_gbps());
    if (d->measured() && d->measured()->size()) o(", %u measured kernel timings", d->measured()->size());
    o("\n");
    if (d->gpus() > 1)
      o("          x %u GPUs of one host (figures above per GPU), GPU link %.0f GB/s per direction, %.1f us per "
        "collective\n",
        d->gpus(), d->host_link_gbps(), d->collective_latency_us());
  } else {
    o("device    %s (%s): CPU, %u threads, %s usable, %.0f GB/s\n", sv(d->name()), sv(d->description()),
      d->cpu_threads(), format_gib(double(d->usable_bytes())).c_str(), d->bandwidth_gbps());
  }
  std::string buckets;
  if (op->prefill_buckets())
    for (uint32_t b : *op->prefill_buckets()) buckets += (buckets.empty() ? "" : ",") + std::to_string(b);
  o("options   max context %llu (requested %llu), numerics %s, KV %s, prefill buckets %s, MTP depth %u,\n",
    (unsigned long long)op->max_context(), (unsigned long long)op->requested_context(),
    plan::EnumNameNumerics(op->numerics()), plan::EnumNameDType(op->kv_dtype()), buckets.c_str(), op->mtp_depth());
  o("          predicted times at context %llu, offload %s, fit-context %s, PDL %s%s\n",
    (unsigned long long)op->cost_context(), op->allow_offload() ? "allowed" : "off", op->fit_context() ? "on" : "off",
    op->pdl() ? "on" : "off", op->exact_parallel() ? "" : ", inexact-parallel");
  if (op->overrides() && op->overrides()->size())
    for (const auto* ov : *op->overrides()) o("          override %s=%s\n", sv(ov->pattern()), sv(ov->kernel()));
}

void memory(Out& o, const plan::Plan& p) {
  const auto* m = p.memory();
  const double gib = 1024.0 * 1024 * 1024;
  o("\nmemory (device)                GiB\n");
  o("  weights on device       %9.2f\n", m->weights_device_bytes() / gib);
  o("  KV cache                %9.2f   (%llu tokens)\n", m->kv_bytes() / gib,
    (unsigned long long)p.provenance()->options()->max_context());
  o("  activations             %9.2f\n", m->activation_bytes() / gib);
  o("  workspace               %9.2f\n", m->workspace_bytes() / gib);
  o("  graph reserve           %9.2f\n", m->graph_reserve_bytes() / gib);
  o("  total                   %9.2f   of %.2f usable, headroom %.2f\n", m->total_device_bytes() / gib,
    m->usable_bytes() / gib, m->headroom_bytes() / gib);
  if (m->weights_host_bytes())
    o("  weights in host memory  %9.2f   (%u tensors, pinned, mapped into the device)\n", m->weights_host_bytes() / gib,
      m->offloaded_tensors());
  o("  %s\n", sv(m->note()));
  if (m->devices() && m->devices()->size()) {
    o("\nmemory per device (GiB)  weights       KV  activ.  worksp.  reserve    total   usable  headroom\n");
    for (const auto* x : *m->devices())
      o("  device %-3d          %9.2f %8.2f %7.2f %8.2f %8.2f %8.2f %8.2f %9.2f\n", x->device(), x->weights_bytes() / gib,
        x->kv_bytes() / gib, x->activation_bytes() / gib, x->workspace_bytes() / gib, x->reserve_bytes() / gib,
        x->total_bytes() / gib, x->usable_bytes() / gib, x->headroom_bytes() / gib);
  }
}

const char* parallel_word(plan::Parallel p) {
  switch (p) {
    case plan::Parallel::replicated: return "replicated";
    case plan::Parallel::tensor_split: return "split";
    case plan::Parallel::expert_split: return "split by experts";
    case plan::Parallel::collective: return "collective";
    default: return "single";
  }
}

void parallelism(Out& o, const plan::Plan& p) {
  const auto* x = p.parallelism();
  if (!x) return;
  o("\nparallelism over %u GPUs: routed experts %s, attention %s, shared expert %s, head %s\n", x->devices(),
    parallel_word(x->routed_experts()), parallel_word(x->attention()), parallel_word(x->shared_expert()),
    parallel_word(x->head()));
  o("  %s\n", sv(x->reason()));
  o("  %-11s %-13s %-11s %12s %14s  %s\n", "attention", "shared expert", "head", "decode step", "fullest GiB", "");
  if (x->options())
    for (const auto* t : *x->options())
      o("  %-11s %-13s %-11s %12s %14.2f  %s\n", parallel_word(t->attention()), parallel_word(t->shared_expert()),
        parallel_word(t->head()), t->decode_us() > 0 ? format_us(t->decode_us()).c_str() : "-",
        t->max_device_bytes() / (1024.0 * 1024 * 1024), t == x->options()->Get(0) ? "chosen" : sv(t->why_not()));
}

void placement(Out& o, const plan::Plan& p) {
  struct Tally {
    uint32_t tensors = 0;
    double bytes = 0;
  };
  std::map<plan::Placement, Tally> t;
  std::map<plan::Placement, uint32_t> chunks;
  for (const auto* w : *p.weights()) {
    auto& x = t[w->placement()];
    ++x.tensors;
    x.bytes += double(w->bytes());
  }
  for (const auto* c : *p.chunks()) ++chunks[c->placement()];
  o("\nplacement\n");
  for (auto& [pl, x] : t)
    o("  %-14s %5u tensors %10s in %u chunk%s\n", plan::EnumNamePlacement(pl), x.tensors,
      format_gib(x.bytes).c_str(), chunks[pl], chunks[pl] == 1 ? "" : "s");
  // Host-mapped tensors, folded by role.
  std::map<std::string, std::vector<int>> host;
  std::map<std::string, double> host_bytes;
  std::map<std::string, std::string> reason;
  for (const auto* w : *p.weights())
    if (w->placement() == plan::Placement::host_mapped) {
      const std::string role = weight_role(w->name()->str());
      host[role].push_back(layer_of(w->name()->str()));
      host_bytes[role] += double(w->bytes());
      reason[role] = sv(w->reason());
    }
  for (auto& [role, layers] : host)
    o("  host_mapped: blk.%s %s (%s): %s\n", format_layers(layers).c_str(), role.c_str(),
      format_gib(host_bytes[role]).c_str(), reason[role].c_str());
  // Multi-GPU: what is split how, folded by role (whole copies are on every device).
  struct Split {
    std::vector<int> layers;
    double bytes = 0;
    std::string ranges;
  };
  std::map<std::string, Split> split;
  std::vector<std::string> order;
  uint32_t whole = 0;
  double whole_bytes = 0;
  for (const auto* w : *p.weights()) {
    if (!w->slices() || w->slices()->size() == 0) continue;
    const auto axis = w->slices()->Get(0)->axis();
    if (axis == plan::SliceAxis::whole) {
      ++whole;
      whole_bytes += double(w->bytes());
      continue;
    }
    const std::string name = w->name()->str();
    const std::string key = weight_role(name) + (axis == plan::SliceAxis::columns ? " (columns)" : " (outer dim)");
    if (!split.count(key)) {
      order.push_back(key);
      std::string r;
      for (const auto* sl : *w->slices())
        r += str(r.empty() ? "" : ", ", "[", sl->first(), ",", sl->first() + sl->count(), ") on ", sl->device());
      split[key].ranges = r;
    }
    split[key].layers.push_back(layer_of(name));
    split[key].bytes += double(w->bytes());
  }
  if (whole || !split.empty()) {
    o("  on every device: %u tensors (%s each)\n", whole, format_gib(whole_bytes).c_str());
    for (const auto& k : order) {
      const Split& x = split[k];
      const bool model_level = x.layers.size() == 1 && x.layers[0] < 0;
      o("  split: %s%s (%s in all): %s\n", model_level ? "" : ("blk." + format_layers(x.layers) + " ").c_str(),
        k.c_str(), format_gib(x.bytes).c_str(), x.ranges.c_str());
    }
  }
}

void kv(Out& o, const plan::Plan& p) {
  struct Tally {
    std::vector<int> layers;
    double bytes = 0;
    uint64_t comp = 0, index = 0;
    uint32_t raw = 0, ratio = 0;
  };
  std::map<plan::LayerKind, Tally> t;
  for (const auto* k : *p.kv()) {
    auto& x = t[k->kind()];
    x.layers.push_back(int(k->layer()));
    x.bytes += double(k->bytes());
    x.comp = k->compressed_rows();
    x.index = k->index_rows();
    x.raw = k->raw_rows();
    x.ratio = k->ratio();
  }
  o("\nKV cache per layer kind (%llu tokens, %s)\n", (unsigned long long)p.provenance()->options()->max_context(),
    plan::EnumNameDType(p.provenance()->options()->kv_dtype()));
  for (auto& [kind, x] : t)
    o("  %-4s layers %-10s ratio %3u: raw ring %u rows, %llu compressed rows, %llu index rows; %s in all\n",
      plan::EnumNameLayerKind(kind), format_layers(x.layers).c_str(), x.ratio, x.raw, (unsigned long long)x.comp,
      (unsigned long long)x.index, format_gib(x.bytes).c_str());
}

// Nodes launched with programmatic dependent launch (Node.overlap_prev).
uint32_t overlap_nodes(const plan::Phase& ph) {
  uint32_t n = 0;
  for (const auto* x : *ph.nodes()) n += x->overlap_prev();
  return n;
}

void phase_summary(Out& o, const plan::Plan& p) {
  o("\nphases (predicted at context %llu)\n", (unsigned long long)p.provenance()->options()->cost_context());
  o("  %-18s %7s %6s %6s %7s %9s %12s %12s\n", "phase", "tokens", "nodes", "pdl", "graphs", "host-sync", "per step",
    "tokens/s");
  for (const auto* ph : *p.phases()) {
    uint32_t graphs = 0, plain = 0;
    for (const auto* s : *ph->segments()) (s->graph() ? graphs : plain)++;
    const double tps = ph->predicted_us() > 0 ? ph->max_tokens() * 1e6 / ph->predicted_us() : 0;
    o("  %-18s %7u %6u %6u %7u %9u %12s %12.1f\n", sv(ph->name()), ph->max_tokens(), ph->nodes()->size(),
      overlap_nodes(*ph), graphs, plain, format_us(ph->predicted_us()).c_str(), tps);
  }
}

// Rows of the per-phase table: nodes with the same role, op, kernel and (to 3
// significant digits) predicted time, over all the layers that share them.
struct Row {
  std::string role;
  const plan::Node* first = nullptr;
  std::vector<int> layers;
  int count = 0;
  double us = 0;
  double total = 0;
  bool host = false;
};

// 3 significant digits, without exponents for large values: 2.38, 41.1, 463, 5840.
std::string round3(double us) {
  char b[32];
  if (us >= 1000) std::snprintf(b, sizeof b, "%.0f", std::round(us / std::pow(10.0, std::floor(std::log10(us)) - 2)) *
                                                         std::pow(10.0, std::floor(std::log10(us)) - 2));
  else std::snprintf(b, sizeof b, "%.3g", us);
  return b;
}

std::string alternatives(const plan::Plan& p, const plan::Node& n) {
  std::vector<std::pair<float, uint16_t>> valid;
  int invalid = 0;
  if (!n.candidates()) return "";
  for (const auto* c : *n.candidates()) {
    if (c->kernel() == n.kernel()) continue;
    if (c->note() == 0) valid.push_back({c->predicted_us(), c->kernel()});
    else ++invalid;
  }
  std::sort(valid.begin(), valid.end());
  std::string s;
  for (size_t i = 0; i < valid.size() && i < 3; ++i) {
    char b[160];
    std::snprintf(b, sizeof b, "%s%s %s", s.empty() ? "" : ", ", kernel(p, valid[i].second).c_str(),
                  format_us(valid[i].first).c_str());
    s += b;
  }
  if (valid.size() > 3) s += ", ...";
  if (invalid) s += (s.empty() ? "" : "; ") + std::to_string(invalid) + " cannot run";
  return s;
}

const char* choice_tag(const plan::Node& n) {
  switch (n.choice()) {
    case plan::Choice::measured: return " [measured]";
    case plan::Choice::forced: return " [override]";
    case plan::Choice::only_valid: return " [only]";
    default: return "";
  }
}

void phase_table(Out& o, const plan::Plan& p, const plan::Phase& ph) {
  uint32_t graphs = 0;
  for (const auto* s : *ph.segments()) graphs += s->graph();
  o("\nphase %s: %u token%s per step, %u nodes in %u segment%s (%u CUDA graph%s), predicted %s per step\n",
    sv(ph.name()), ph.max_tokens(), ph.max_tokens() == 1 ? "" : "s", ph.nodes()->size(), ph.segments()->size(),
    ph.segments()->size() == 1 ? "" : "s", graphs, graphs == 1 ? "" : "s", format_us(ph.predicted_us()).c_str());
  if (const uint32_t pdl = overlap_nodes(ph))
    o("  [pdl]: %u node%s start while the previous kernel finishes (programmatic dependent launch)\n", pdl,
      pdl == 1 ? "" : "s");
  for (const auto* s : *ph.segments())
    if (!s->graph() && p.device()->backend() == plan::Backend::cuda)
      o("  outside graphs: node %u (%s, %s needs the host)\n", s->first(), sv(ph.nodes()->Get(s->first())->name()),
        kernel(p, ph.nodes()->Get(s->first())->kernel()).c_str());
  std::vector<Row> rows;
  std::map<std::string, size_t> where;
  for (const auto* n : *ph.nodes()) {
    const std::string role = node_role(n->name()->str());
    const bool host = n->host_bytes() > 0;
    const std::string key = role + "|" + std::to_string(n->kernel()) + "|" + round3(n->predicted_us()) + "|" +
                            std::to_string(host) + "|" + std::to_string(int(n->choice())) + "|" +
                            std::to_string(int(n->parallel())) + "|" + std::to_string(n->overlap_prev());
    auto it = where.find(key);
    if (it == where.end()) {
      it = where.emplace(key, rows.size()).first;
      rows.push_back({role, n, {}, 0, n->predicted_us(), 0, host});
    }
    Row& r = rows[it->second];
    if (n->layer() >= 0 && role.rfind("mtp.", 0) != 0) r.layers.push_back(n->layer());
    ++r.count;
    r.total += n->predicted_us();
  }
  const bool multi = p.device()->gpus() > 1;
  if (multi) {
    uint32_t reduce = 0, gather = 0;
    double us = 0, bytes = 0;
    for (const auto* n : *ph.nodes()) {
      if (n->op() == plan::OpKind::all_reduce) ++reduce;
      else if (n->op() == plan::OpKind::all_gather) ++gather;
      else continue;
      us += n->predicted_us();
      bytes += n->link_bytes();
    }
    o("  collectives: %u all_reduce + %u all_gather, %s over the links, predicted %s per step (%.1f%%)\n", reduce,
      gather, format_bytes(bytes).c_str(), format_us(us).c_str(), ph.predicted_us() > 0 ? us / ph.predicted_us() * 100 : 0.0);
  }
  // 26: the longest DS4 role, indexer_compressor_kv_gate (a paired node), fits.
  o("  %-26s %-10s %-16s %-36s %9s %9s  %s\n", "node", "layers", multi ? "op (devices)" : "op", "kernel", "us/node",
    "us total", "alternatives (predicted)");
  for (const Row& r : rows) {
    const std::string kern = kernel(p, r.first->kernel()) + choice_tag(*r.first) + (r.first->overlap_prev() ? " [pdl]" : "");
    std::string op = plan::EnumNameOpKind(r.first->op());
    if (multi) {
      const auto par = r.first->parallel();
      op += par == plan::Parallel::tensor_split ? " /N" : par == plan::Parallel::expert_split ? " /E" : par == plan::Parallel::collective ? " <>" : "";
    }
    o("  %-26s %-10s %-16s %-36s %9s %9s  %s%s\n", r.role.c_str(), format_layers(r.layers).c_str(), op.c_str(), kern.c_str(), round3(r.us).c_str(), round3(r.total).c_str(),
      r.host ? "[reads host memory] " : "", alternatives(p, *r.first).c_str());
  }
}

}  // namespace

std::string plan_to_text(const LoadedPlan& lp) {
  Out o;
  header(o, lp);
  memory(o, *lp);
  parallelism(o, *lp);
  placement(o, *lp);
  kv(o, *lp);
  phase_summary(o, *lp);
  for (const auto* ph : *lp->phases()) phase_table(o, *lp, *ph);
  return o.s;
}

}  // namespace fp
