// The registry table: collects every family's entries once, sorts them by id and checks
// that ids are unique (a duplicate is a programming error, reported at first use).
#include "ops/registry/kernel_registry.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "ops/core/error.h"

namespace fp {

const char* backend_name(Backend b) { return b == Backend::Cuda ? "cuda" : "cpu"; }

std::string KernelShape::key() const {
  std::ostringstream os;
  os << op_kind_name(op) << " t=" << tokens;
  if (m) os << " m=" << m;
  if (k) os << " k=" << k;
  if (groups != 1) os << " g=" << groups;
  if (experts) os << " e=" << experts;
  if (heads) os << " h=" << heads << "x" << head_dim;
  if (rows) os << " rows=" << rows;
  if (kv_elem_bytes) os << " kv=" << kv_elem_bytes;
  if (link_bytes > 0) os << " b=" << static_cast<uint64_t>(link_bytes);
  if (!wtypes.empty()) {
    os << " w=";
    for (size_t i = 0; i < wtypes.size(); ++i) os << (i ? "/" : "") << dtype_name(wtypes[i]);
  }
  return os.str();
}

namespace {

std::vector<KernelInfo> build() {
  std::vector<KernelInfo> all;
  register_matmul_kernels(all);
  register_attention_kernels(all);
  register_compressor_kernels(all);
  register_hc_kernels(all);
  register_moe_kernels(all);
  register_norm_kernels(all);
  register_sample_kernels(all);
  register_collective_kernels(all);
  std::sort(all.begin(), all.end(), [](const KernelInfo& a, const KernelInfo& b) { return a.id < b.id; });
  for (size_t i = 1; i < all.size(); ++i)
    if (all[i].id == all[i - 1].id) fail("kernel registry: id ", all[i].id, " registered twice");
  for (const auto& k : all) {
    if (!k.cost) fail("kernel registry: ", k.id, " has no cost function");
    const std::string prefix = std::string(backend_name(k.backend)) + ".";
    if (k.id.rfind(prefix, 0) != 0) fail("kernel registry: ", k.id, " must start with ", prefix);
  }
  return all;
}

}  // namespace

const std::vector<KernelInfo>& kernel_registry() {
  static const std::vector<KernelInfo> table = build();
  return table;
}

const KernelInfo* find_kernel(std::string_view id) {
  const auto& t = kernel_registry();
  auto it = std::lower_bound(t.begin(), t.end(), id, [](const KernelInfo& k, std::string_view v) { return k.id < v; });
  return it != t.end() && it->id == id ? &*it : nullptr;
}

std::string kernel_rejection(const KernelInfo& k, const KernelShape& s, const DeviceRates& r) {
  if (k.op != s.op) return str("serves ", op_kind_name(k.op), ", not ", op_kind_name(s.op));
  if (k.backend != r.backend) return str("needs a ", backend_name(k.backend), " device");
  if (!k.implemented && !is_collective(k.op)) return kNotImplemented;  // see KernelInfo::implemented
  if (k.backend == Backend::Cuda && r.cc < k.min_cc)
    return str("needs compute capability ", k.min_cc / 10, ".", k.min_cc % 10, ", device has ", r.cc / 10, ".",
               r.cc % 10);
  if (s.tokens < k.min_tokens || s.tokens > k.max_tokens) {
    if (k.max_tokens == UINT32_MAX) return str("for ", k.min_tokens, "+ tokens per step, node has ", s.tokens);
    return str("for ", k.min_tokens, "..", k.max_tokens, " tokens per step, node has ", s.tokens);
  }
  for (DType t : s.wtypes) {
    const bool listed = std::find(k.dtypes.begin(), k.dtypes.end(), t) != k.dtypes.end();
    const bool ok = listed || (k.any_dequant && traits(t).dequant) || (k.dtypes.empty() && !k.any_dequant);
    if (!ok) return str("does not read ", dtype_name(t), " weights");
  }
  if (k.check) return k.check(s);
  return "";
}

std::string overlap_rejection(const KernelInfo& k, uint32_t cc) {
  if (k.overlap_min_cc == 0) return "its launcher has no programmatic dependent launch (it starts after the previous kernel ends)";
  if (cc < k.overlap_min_cc)
    return str("it overlaps the previous kernel from compute capability ", k.overlap_min_cc / 10, ".",
               k.overlap_min_cc % 10, ", the device has ", cc / 10, ".", cc % 10);
  return "";
}

}  // namespace fp
