// Helpers for the planner tests: header-only synth models (the full DS4 Flash table and
// the tiny preset with its in-file MTP block), shipped device profiles, and compiling.
#pragma once
#include <string>

#include "model_test_util.h"
#include "ops/core/error.h"
#include "planner/compile/compile.h"
#include "planner/model/model.h"
#include "planner/profile/device_profile.h"
#include "tests/support/error_of.h"

namespace fp::test {

inline std::string full_header_path() { return synth_file("plan_full_header", synth_preset("full"), true); }
inline std::string tiny_header_path() { return synth_file("plan_tiny_header", synth_preset("tiny"), true); }

inline const Model& full_model() {
  static const Model m = [] {
    ModelOpenOptions o;
    o.allow_header_only = true;
    return Model::open(full_header_path(), o);
  }();
  return m;
}

inline const Model& tiny_model() {
  static const Model m = [] {
    ModelOpenOptions o;
    o.allow_header_only = true;
    return Model::open(tiny_header_path(), o);
  }();
  return m;
}

inline DeviceProfile shipped_profile(const std::string& name) {
  return load_device_profile(std::string(FLASHPLAN_SOURCE_DIR) + "/plans/devices/" + name + ".yaml");
}

inline std::vector<uint8_t> compile_bytes(const Model& m, const DeviceProfile& p, CompileOptions o = {}) {
  if (o.model_file.empty()) o.model_file = "model.gguf";
  return serialize_plan(*compile_plan(m, p, o));
}

}  // namespace fp::test
