// render_chat and the tools block (see chat_template.h).
#include "runtime/chat/chat_template.h"

#include "ops/core/error.h"
#include "runtime/chat/dsml.h"
#include "runtime/chat/json_text.h"

namespace fp {
namespace {

enum class Role { System, User, Tool, Assistant };

Role role_of(const ChatMessage& m, size_t index) {
  if (m.role == "system" || m.role == "developer") return Role::System;
  if (m.role == "user") return Role::User;
  if (m.role == "tool" || m.role == "function") return Role::Tool;
  if (m.role == "assistant") return Role::Assistant;
  fail("chat message ", index, ": role '", m.role, "', expected system, developer, user, assistant, tool or function");
}

// Tool output is data: only the wrapper's own closing tag is escaped, so that a result
// containing it cannot end the wrapper early.
std::string escape_tool_result(std::string_view s) {
  static constexpr std::string_view kClose = "</tool_result>";
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (s.substr(i, kClose.size()) == kClose) {
      out += "&lt;";
      ++i;
    } else {
      out += s[i++];
    }
  }
  return out;
}

}  // namespace

std::string_view think_max_prefix() {
  return "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
         "You MUST be very thorough in your thinking and comprehensively decompose the problem to resolve the "
         "root cause, rigorously stress-testing your logic against all potential paths, edge cases, and "
         "adversarial scenarios.\n"
         "Explicitly write out your entire deliberation process, documenting every intermediate step, considered "
         "alternative, and rejected hypothesis to ensure absolutely no assumption is left unchecked.\n\n";
}

std::string tools_block(std::string_view tools_json) {
  if (tools_json.find_first_not_of(" \t\r\n") == std::string_view::npos) return "";
  const auto items = json_text::array_items(tools_json);
  if (!items) fail("tools: not a JSON array of tools: ", tools_json.substr(0, 80));
  std::string schemas;
  for (std::string_view item : *items) {
    std::string_view schema = item;
    if (auto members = json_text::object_members(item)) {
      for (const auto& m : *members) {
        if (m.key == "function" && !m.raw.empty() && m.raw.front() == '{') schema = m.raw;
      }
    }
    if (!schemas.empty()) schemas += '\n';
    schemas += json_text::minify(schema);
  }
  if (schemas.empty()) return "";
  std::string out =
      "## Tools\n\n"
      "You have access to a set of tools to help answer the user question. "
      "You can invoke tools by writing a \"<｜DSML｜tool_calls>\" block like the following:\n\n"
      "<｜DSML｜tool_calls>\n"
      "<｜DSML｜invoke name=\"$TOOL_NAME\">\n"
      "<｜DSML｜parameter name=\"$PARAMETER_NAME\" string=\"true|false\">$PARAMETER_VALUE</｜DSML｜parameter>\n"
      "...\n"
      "</｜DSML｜invoke>\n"
      "<｜DSML｜invoke name=\"$TOOL_NAME2\">\n"
      "...\n"
      "</｜DSML｜invoke>\n"
      "</｜DSML｜tool_calls>\n\n"
      "String parameters should be specified as raw text and set `string=\"true\"`. "
      "Preserve characters such as `>`, `&`, and `&&` exactly; never replace normal string characters with XML "
      "or HTML entity escapes. "
      "Only if a string value itself contains the exact closing parameter tag `</｜DSML｜parameter>`, write that "
      "tag as `&lt;/｜DSML｜parameter>` inside the value. "
      "For all other types (numbers, booleans, arrays, objects), pass the value in JSON format and set "
      "`string=\"false\"`.\n\n"
      "If thinking_mode is enabled (triggered by <think>), you MUST output your complete reasoning inside "
      "<think>...</think> BEFORE any tool calls or final response.\n\n"
      "Otherwise, output directly after </think> with tool calls or final response.\n\n"
      "### Available Tool Schemas\n\n";
  out += schemas;
  out += "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls. "
         "Use the exact parameter names from the schemas.";
  return out;
}

std::string render_chat(const std::vector<ChatMessage>& messages, const ChatOptions& opts) {
  const bool think = opts.thinking || opts.think_max;
  const std::string tools = tools_block(opts.tools_json);

  std::vector<Role> roles;
  bool tool_context = !tools.empty();
  long last_user = -1;
  std::string system;
  for (size_t i = 0; i < messages.size(); ++i) {
    const Role r = role_of(messages[i], i);
    roles.push_back(r);
    if (r == Role::Tool || (r == Role::Assistant && !messages[i].tool_calls.empty())) tool_context = true;
    if (r == Role::User || r == Role::Tool) last_user = static_cast<long>(i);
    if (r == Role::System) {
      if (!system.empty()) system += "\n\n";
      system += messages[i].content;
    }
  }
  if (!tools.empty()) {
    if (!system.empty()) system += "\n\n";
    system += tools;
  }

  std::string out(kBos);
  if (opts.think_max) out += think_max_prefix();
  out += system;

  bool pending_assistant = false;  // a user turn or tool results await the assistant
  bool in_tool_results = false;    // consecutive results share one <｜User｜>
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    switch (roles[i]) {
      case Role::System:
        break;
      case Role::User:
        out += kUser;
        out += m.content;
        pending_assistant = true;
        in_tool_results = false;
        break;
      case Role::Tool:
        if (!in_tool_results) out += kUser;
        out += "<tool_result>" + escape_tool_result(m.content) + "</tool_result>";
        pending_assistant = true;
        in_tool_results = true;
        break;
      case Role::Assistant:
        if (pending_assistant) {
          out += kAssistant;
          if (think && (tool_context || static_cast<long>(i) > last_user)) {
            out += kThinkStart;
            out += m.reasoning;
          }
          out += kThinkEnd;
        }
        out += m.content;
        out += dsml::render_calls(m.tool_calls);
        out += kEos;
        pending_assistant = false;
        in_tool_results = false;
        break;
    }
  }
  if (pending_assistant && opts.add_generation_prompt) {
    out += kAssistant;
    out += think ? kThinkStart : kThinkEnd;
  }
  return out;
}

}  // namespace fp
