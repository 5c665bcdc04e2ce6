// plan_to_json: flatbuffers::Parser over the embedded schema text + GenerateText.
#include "planner/plan_io/plan_json.h"

#include <flatbuffers/idl.h>

#include "ops/core/error.h"
#include "schemas/plan_fbs_text.h"

namespace fp {

std::string plan_to_json(const LoadedPlan& p) {
  flatbuffers::IDLOptions opts;
  opts.strict_json = true;
  opts.output_default_scalars_in_json = true;
  opts.output_enum_identifiers = true;
  opts.natural_utf8 = true;
  opts.indent_step = 1;
  flatbuffers::Parser parser(opts);
  if (!parser.Parse(schemas::plan_fbs_text)) fail("plan schema: ", parser.error_);
  std::string json;
  if (!flatbuffers::GenerateText(parser, p.bytes.data(), &json))
    fail(p.path, ": cannot print the plan as JSON");
  return json;
}

}  // namespace fp
