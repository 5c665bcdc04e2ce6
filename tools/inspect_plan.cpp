// `flashplan inspect PLAN [--json]`: plans are recognised by their FlatBuffers file
// identifier "FPLN" at bytes 4..7 (tools/inspect.h). Loading verifies the plan, so a
// damaged file is refused here too.
#include <cstdio>
#include <cstring>

#include "planner/plan_io/plan_io.h"
#include "planner/plan_io/plan_json.h"
#include "planner/plan_io/plan_text.h"
#include "tools/inspect.h"

FP_INSPECT_KIND("plan", "FlatBuffers identifier \"FPLN\" at byte 4",
                [](const std::string&, std::span<const uint8_t> head) {
                  return head.size() >= 8 && std::memcmp(head.data() + 4, "FPLN", 4) == 0;
                },
                [](const std::string& path, bool json) {
                  const fp::LoadedPlan p = fp::load_plan(path);
                  const std::string s = json ? fp::plan_to_json(p) : fp::plan_to_text(p);
                  std::fwrite(s.data(), 1, s.size(), stdout);
                  return 0;
                });
