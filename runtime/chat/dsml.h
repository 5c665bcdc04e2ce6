// DSML, DeepSeek V4's tool-call markup (MODEL.md §9.2):
//
//   \n\n<｜DSML｜tool_calls>
//   <｜DSML｜invoke name="NAME">
//   <｜DSML｜parameter name="P" string="true">raw text</｜DSML｜parameter>
//   <｜DSML｜parameter name="Q" string="false">{"json":1}</｜DSML｜parameter>
//   </｜DSML｜invoke>
//   </｜DSML｜tool_calls>
//
// Rendering past calls (from ToolCall::arguments_json) and parsing generated ones.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/chat/chat_template.h"

namespace fp::dsml {

inline constexpr std::string_view kCallsStart = "<｜DSML｜tool_calls>";
inline constexpr std::string_view kCallsEnd = "</｜DSML｜tool_calls>";
inline constexpr std::string_view kInvokeStart = "<｜DSML｜invoke";
inline constexpr std::string_view kInvokeEnd = "</｜DSML｜invoke>";
inline constexpr std::string_view kParamStart = "<｜DSML｜parameter";
inline constexpr std::string_view kParamEnd = "</｜DSML｜parameter>";

// The block for `calls`, starting with "\n\n"; empty for no calls.
std::string render_calls(const std::vector<ToolCall>& calls);

// Parses the block that starts at text[0] (kCallsStart). On success returns the calls
// and sets `end` to the offset just past kCallsEnd; nullopt for malformed DSML.
std::optional<std::vector<ToolCall>> parse_calls(std::string_view text, size_t& end);

}  // namespace fp::dsml
