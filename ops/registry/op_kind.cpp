// Names of the op kinds (stable: they appear in plans and kernel ids).
#include "ops/registry/op_kind.h"

namespace fp {

namespace {
constexpr const char* kNames[kOpKindCount] = {
    "embed",       "hc_pre",         "rms_norm", "matmul", "q_head_norm_rope", "kv_rope_store",
    "compressor",  "indexer_topk",   "attention", "out_inv_rope", "grouped_matmul", "hc_post",
    "router",      "moe",            "swiglu",   "add",    "output_hc_head",   "argmax",
    "sample",      "mtp_embed_proj", "all_reduce", "all_gather",
    "moe_combine",
};
}  // namespace

const char* op_kind_name(OpKind k) {
  auto i = static_cast<int>(k);
  return i >= 0 && i < kOpKindCount ? kNames[i] : "?";
}

std::optional<OpKind> op_kind_from_name(std::string_view name) {
  for (int i = 0; i < kOpKindCount; ++i)
    if (name == kNames[i]) return static_cast<OpKind>(i);
  return std::nullopt;
}

}  // namespace fp
