// Kernel selection and graph segmentation (see select.h).
#include "planner/select/select.h"

#include <algorithm>

#include "ops/core/error.h"

namespace fp {

KernelOverride parse_override(std::string_view arg) {
  const auto eq = arg.rfind('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == arg.size())
    fail("--override '", arg, "': expected PATTERN=KERNEL, e.g. 'blk.*.ffn_moe=cuda.moe.grouped_int8_tc'");
  KernelOverride o{std::string(arg.substr(0, eq)), std::string(arg.substr(eq + 1))};
  if (!find_kernel(o.kernel)) {
    std::string near;
    for (const auto& k : kernel_registry())
      if (k.id.find(o.kernel.substr(0, std::min<size_t>(o.kernel.size(), 8))) != std::string::npos)
        near += (near.empty() ? "" : ", ") + k.id;
    fail("--override '", arg, "': kernel ", o.kernel, " is not registered; expected a kernel id",
         near.empty() ? std::string(" (`flashplan kernels` lists them)") : " such as " + near);
  }
  return o;
}

bool glob_match(std::string_view p, std::string_view s) {
  // Iterative wildcard match with backtracking to the last '*'.
  size_t pi = 0, si = 0, star = std::string_view::npos, mark = 0;
  while (si < s.size()) {
    if (pi < p.size() && (p[pi] == '?' || p[pi] == s[si])) {
      ++pi;
      ++si;
    } else if (pi < p.size() && p[pi] == '*') {
      star = pi++;
      mark = si;
    } else if (star != std::string_view::npos) {
      pi = star + 1;
      si = ++mark;
    } else {
      return false;
    }
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

std::vector<PhaseSegment> segment_phase(const std::vector<NodeChoice>& nodes, Backend backend) {
  std::vector<PhaseSegment> out;
  if (nodes.empty()) return out;
  if (backend == Backend::Cpu) return {{0, static_cast<uint32_t>(nodes.size()), 0, false}};
  for (uint32_t i = 0; i < nodes.size(); ++i) {
    const bool cap = nodes[i].kernel->capturable;
    if (cap && !out.empty() && out.back().graph) {
      ++out.back().count;
    } else {
      out.push_back({i, 1, 0, cap});
    }
  }
  return out;
}

std::vector<PhaseSelection> select_kernels(const OpGraph& g, const DeviceProfile& profile,
                                           const std::vector<KernelOverride>& overrides) {
  const DeviceRates rates = profile.rates();
  // Kernels per op, of this backend, in id order.
  std::vector<std::vector<const KernelInfo*>> by_op(kOpKindCount);
  for (const auto& k : kernel_registry())
    if (k.backend == profile.backend) by_op[static_cast<int>(k.op)].push_back(&k);

  std::vector<uint32_t> override_uses(overrides.size(), 0);
  std::vector<std::string> override_misses(overrides.size());
  std::vector<PhaseSelection> out;
  for (const PhaseGraph& phase : g.phases) {
    PhaseSelection sel;
    for (const GraphNode& n : phase.nodes) {
      NodeChoice c;
      const std::string key = n.shape.key();
      const CandidateResult* best = nullptr;
      int valid = 0;
      for (const KernelInfo* k : by_op[static_cast<int>(n.op)]) {
        CandidateResult r;
        r.kernel = k;
        r.rejection = kernel_rejection(*k, n.shape, rates);
        if (r.rejection.empty()) {
          ++valid;
          if (auto m = profile.measured_us(k->id, key)) {
            r.us = *m;
            r.measured = true;
          } else {
            r.us = k->cost(n.shape, rates).us;
          }
        }
        c.candidates.push_back(std::move(r));
      }
      for (const auto& r : c.candidates)
        if (r.rejection.empty() && (!best || r.us < best->us)) best = &r;

      // The last matching override wins, as later flags refine earlier ones.
      for (size_t oi = overrides.size(); oi-- > 0;) {
        if (!glob_match(overrides[oi].pattern, n.name)) continue;
        const KernelInfo* k = find_kernel(overrides[oi].kernel);
        if (k->op != n.op)
          fail("--override '", overrides[oi].pattern, "=", overrides[oi].kernel, "': node ", n.name, " is a ",
               op_kind_name(n.op), " node, kernel ", k->id, " serves ", op_kind_name(k->op),
               "; expected a pattern that matches only ", op_kind_name(k->op), " nodes");
        auto it = std::find_if(c.candidates.begin(), c.candidates.end(),
                               [&](const CandidateResult& r) { return r.kernel == k; });
        if (it == c.candidates.end() || !it->rejection.empty()) {
          override_misses[oi] = str(n.name, " in ", phase.name, ": ",
                                    it == c.candidates.end() ? str("needs a ", backend_name(k->backend), " device")
                                                             : it->rejection);
          continue;  // not this node (e.g. a decode-only kernel on a prefill node)
        }
        ++override_uses[oi];
        best = &*it;
        c.choice = ChoiceKind::forced;
        c.override_index = static_cast<int32_t>(oi);
        break;
      }
      if (!best) {
        std::string why;
        for (const auto& r : c.candidates) why += str("; ", r.kernel->id, ": ", r.rejection);
        fail(n.name, " (", phase.name, ", ", key, "): no ", backend_name(profile.backend), " kernel can run it on ",
             profile.name, why.empty() ? std::string(": none registered for this op") : why);
      }
      c.kernel = best->kernel;
      c.cost = best->kernel->cost(n.shape, rates);
      c.cost.us = best->us;
      if (c.choice != ChoiceKind::forced)
        c.choice = best->measured ? ChoiceKind::measured : valid == 1 ? ChoiceKind::only_valid : ChoiceKind::cheapest;
      sel.predicted_us += c.cost.us;
      sel.nodes.push_back(std::move(c));
    }
    sel.segments = segment_phase(sel.nodes, profile.backend);
    out.push_back(std::move(sel));
  }
  for (size_t i = 0; i < overrides.size(); ++i)
    if (override_uses[i] == 0)
      fail("--override '", overrides[i].pattern, "=", overrides[i].kernel, "': ",
           override_misses[i].empty() ? std::string("matches no node; expected a pattern such as 'blk.*.ffn_moe'")
                                      : "the kernel can run none of the nodes it matches (" + override_misses[i] + ")");
  return out;
}

}  // namespace fp
