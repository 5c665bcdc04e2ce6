#include "planner/profile/calibrate.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <utility>

#include "ops/core/error.h"
#include "planner/graph/op_kind.h"
#include "planner/plan_io/plan_shape.h"

namespace fp {
namespace {

struct Row {
  int line = 0;
  std::string phase, op, weight;
  uint32_t node = 0;
  double us = 0;
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::string cell;
  std::istringstream in(s);
  while (std::getline(in, cell, ',')) out.push_back(cell);
  if (!s.empty() && s.back() == ',') out.emplace_back();
  return out;
}

std::vector<Row> parse_rows(const std::string& csv, const std::string& name, std::string& source) {
  std::istringstream in(csv);
  std::string line;
  std::vector<std::string> header;
  std::vector<Row> rows;
  int n = 0;
  int c_phase = -1, c_node = -1, c_op = -1, c_weight = -1, c_us = -1;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (line[0] == '#') {
      const size_t text = line.find_first_not_of("# ");
      if (source.empty() && text != std::string::npos) source = line.substr(text);
      continue;
    }
    const std::vector<std::string> cells = split(line);
    if (header.empty()) {
      header = cells;
      auto col = [&](const char* want) {
        const auto it = std::find(header.begin(), header.end(), want);
        if (it == header.end())
          fail(name, ": line ", n, ": no '", want, "' column; expected the header of `flashplan profile -o` (phase,node,op,...,us)");
        return int(it - header.begin());
      };
      c_phase = col("phase"), c_node = col("node"), c_op = col("op"), c_weight = col("weight"), c_us = col("us");
      continue;
    }
    if (cells.size() != header.size())
      fail(name, ": line ", n, ": ", cells.size(), " cells, expected ", header.size(), " as in the header");
    Row r;
    r.line = n;
    r.phase = cells[size_t(c_phase)];
    r.op = cells[size_t(c_op)];
    r.weight = cells[size_t(c_weight)];
    char* end = nullptr;
    const std::string& node = cells[size_t(c_node)];
    const unsigned long v = std::strtoul(node.c_str(), &end, 10);
    if (node.empty() || *end || v > UINT32_MAX) fail(name, ": line ", n, ": node '", node, "'; expected a node index");
    r.node = uint32_t(v);
    const std::string& us = cells[size_t(c_us)];
    r.us = std::strtod(us.c_str(), &end);
    if (us.empty() || *end || !(r.us >= 0) || r.us > 1e9)
      fail(name, ": line ", n, ": us '", us, "'; expected microseconds >= 0");
    rows.push_back(std::move(r));
  }
  if (header.empty()) fail(name, ": no header line; expected the CSV of `flashplan profile -o`");
  return rows;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

}  // namespace

namespace {

// Checks that `rows` are a profile of plan phase `ph` (count, and each node's op and first
// weight), naming the line and both sides otherwise.
void match_phase(const LoadedPlan& plan, const plan::Phase& ph, const std::vector<const Row*>& rows,
                 const std::string& name, const char* what) {
  const plan::Plan& p = *plan;
  const std::string phase = ph.name()->str();
  const uint32_t nodes = ph.nodes()->size();
  if (rows.size() != nodes)
    fail(name, ": ", rows.size(), " ", what, " rows, plan ", plan.path, " phase ", phase, " has ", nodes,
         " nodes; expected a profile of this plan (flashplan profile --plan)",
         std::string(what) == "prefill" ? " at its largest prefill chunk" : "");
  for (uint32_t i = 0; i < nodes; ++i) {
    const Row& r = *rows[i];
    const plan::Node& n = *ph.nodes()->Get(i);
    const char* op = op_kind_name(static_cast<OpKind>(n.op()));
    if (r.node != i || r.op != op)
      fail(name, ": line ", r.line, ": ", what, " node ", r.node, " is ", r.op, "; plan ", plan.path, " phase ", phase,
           " has node ", i, " = ", op, " (", n.name()->str(), "); expected a profile of this plan");
    if (!r.weight.empty()) {
      const bool has = n.weights() && n.weights()->size() > 0;
      const std::string w = has ? p.weights()->Get(n.weights()->Get(0))->name()->str() : "";
      if (r.weight != w)
        fail(name, ": line ", r.line, ": ", what, " node ", i, " reads ", r.weight, "; the plan's node ",
             n.name()->str(), " reads ", has ? w : std::string("no weight"), "; expected a profile of this plan");
    }
  }
}

}  // namespace

Calibration calibrate_from_profile(const LoadedPlan& plan, const std::string& csv, const std::string& name) {
  Calibration c;
  const std::vector<Row> rows = parse_rows(csv, name, c.source);
  const plan::Plan& p = *plan;
  // The profiled prefill chunk is the plan's largest bucket: that phase's nodes.
  const plan::Phase* prefill = nullptr;
  const plan::Phase* decode = nullptr;
  for (const plan::Phase* ph : *p.phases()) {
    if (ph->kind() == plan::PhaseKind::prefill && (!prefill || ph->max_tokens() > prefill->max_tokens())) prefill = ph;
    if (ph->kind() == plan::PhaseKind::decode && !decode) decode = ph;
  }
  if (!prefill) fail(plan.path, ": the plan has no prefill phase to match ", name, "'s prefill rows to");
  c.phase = prefill->name()->str();
  // Profiles since 2026-12-07 name their prefill chunk ("chunk N"); it must be the bucket's size.
  const size_t ck = c.source.find(", chunk ");
  if (ck != std::string::npos) {
    const unsigned long chunk = std::strtoul(c.source.c_str() + ck + 8, nullptr, 10);
    if (chunk != prefill->max_tokens())
      fail(name, ": the profile's prefill chunk is ", chunk, " tokens; plan ", plan.path, "'s largest bucket (",
           c.phase, ") is ", prefill->max_tokens(), "; expected a profile run with --chunk ", prefill->max_tokens());
  }
  // `flashplan profile --in-graph` says "timing graph": its nodes ran from the step's graph.
  c.graph = c.source.find(", timing graph") != std::string::npos;

  std::vector<const Row*> pre, dec;
  for (const Row& r : rows) {
    if (r.phase == "decode") dec.push_back(&r);
    else if (r.phase == "prefill") pre.push_back(&r);
    else fail(name, ": line ", r.line, ": phase '", r.phase, "'; expected decode or prefill");
  }
  match_phase(plan, *prefill, pre, name, "prefill");
  std::vector<std::pair<const Row*, const plan::Node*>> used;
  for (uint32_t i = 0; i < pre.size(); ++i) used.push_back({pre[i], prefill->nodes()->Get(i)});
  if (c.graph && decode && !dec.empty()) {
    match_phase(plan, *decode, dec, name, "decode");
    for (uint32_t i = 0; i < dec.size(); ++i) used.push_back({dec[i], decode->nodes()->Get(i)});
    c.phase = str(decode->name()->str(), " and ", c.phase);
  } else {
    c.decode = uint32_t(dec.size());
  }

  std::map<std::pair<std::string, std::string>, size_t> at;
  std::vector<std::vector<double>> times;
  for (const auto& [r, np] : used) {
    const plan::Node& n = *np;
    if (n.dims() && n.dims()->rows() != 0) {
      ++c.kv_rows;
      continue;
    }
    if (valid_kernels(p, n).size() > 1) {
      ++c.alternatives;
      continue;
    }
    if (!c.graph && n.tokens() <= 1) {  // eager one-token nodes: launch-bound (their key is the decode step's)
      ++c.short_nodes;
      continue;
    }
    const std::string kernel = plan.kernel_id(n), shape = node_shape_key(p, n);
    auto [it, fresh] = at.emplace(std::make_pair(kernel, shape), c.kernels.size());
    if (fresh) {
      c.kernels.push_back({kernel, shape, 0, 0});
      times.emplace_back();
    }
    times[it->second].push_back(r->us);
    ++c.kernels[it->second].nodes;
  }
  // Whole keys are kept or left out (by their median), so no key's timing is a biased pick
  // of its nodes.
  const double min_us = c.graph ? kCalibrateMinGraphUs : kCalibrateMinUs;
  std::vector<CalibratedKernel> kept;
  for (size_t i = 0; i < c.kernels.size(); ++i) {
    CalibratedKernel k = c.kernels[i];
    k.us = median(times[i]);
    if (k.us < min_us) {
      c.short_nodes += k.nodes;
      continue;
    }
    c.used += k.nodes;
    kept.push_back(std::move(k));
  }
  c.kernels = std::move(kept);
  return c;
}

std::string measured_kernels_yaml(const std::vector<CalibratedKernel>& kernels, const std::vector<std::string>& comments) {
  std::ostringstream o;
  o << "measured:\n";
  for (const std::string& c : comments) o << "  # " << c << "\n";
  o << "  kernels:\n";
  for (const CalibratedKernel& k : kernels) {
    char us[32];
    std::snprintf(us, sizeof us, "%.6g", k.us);
    o << "    - {kernel: " << k.kernel << ", shape: \"" << k.shape << "\", us: " << us << "}";
    if (k.nodes) o << "  # median of " << k.nodes << " node" << (k.nodes == 1 ? "" : "s");
    o << "\n";
  }
  return o.str();
}

std::string calibration_yaml(const Calibration& c, const std::string& plan_name, const std::string& csv_name) {
  return measured_kernels_yaml(
      c.kernels,
      {str("flashplan calibrate: ", csv_name, " (", c.source.empty() ? "no header" : c.source, "), plan ", plan_name,
           ", phase ", c.phase),
       str(c.used, " nodes; left to the cost model: ", c.decode, " decode nodes (eager events: host-bound), ",
           c.kv_rows, " whose time depends on the context (KV rows), ", c.alternatives, " with another valid kernel, ",
           c.short_nodes, c.graph ? str(" under ", kCalibrateMinGraphUs, " us (event nodes' own cost)")
                                  : str(" under ", kCalibrateMinUs, " us or of one token (eager launch overhead)"))});
}

}  // namespace fp
