// `flashplan inspect MODEL.gguf`: the DS4 model summary section (planner/model/summary.h)
// after the GGUF's metadata and tensor table, and the "model" key of `--json`. Applies
// to files whose general.architecture is "deepseek4".
#include <cstdio>

#include "planner/gguf/gguf.h"
#include "planner/model/summary.h"
#include "tools/inspect.h"

namespace {

bool is_ds4(const fp::gguf::File& f) {
  const fp::gguf::Value* a = f.find("general.architecture");
  return a && a->type == fp::gguf::ValueType::STRING && a->s == "deepseek4";
}

}  // namespace

FP_INSPECT_GGUF_SECTION(
    "model",
    [](const fp::gguf::File& f, std::FILE* out) {
      if (!is_ds4(f)) return;
      const std::string s = fp::summary_text(fp::summarize_model(f));
      std::fwrite(s.data(), 1, s.size(), out);
    },
    [](const fp::gguf::File& f, nlohmann::ordered_json& out) {
      if (is_ds4(f)) out["model"] = fp::summary_json(fp::summarize_model(f));
    });
