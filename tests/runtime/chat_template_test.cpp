// The DS4 chat template: hand-written expected renderings for each case of
// MODEL.md §9.2 (system, multi-turn, thinking on/off, history reasoning dropped or
// kept, tool results, tool calls, think-max), and parse_reply on well-formed and
// malformed generated text.
#include <doctest/doctest.h>

#include <random>
#include <string>
#include <vector>

#include "ops/core/error.h"
#include "runtime/chat/chat_template.h"
#include "runtime/chat/json_text.h"

using fp::ChatMessage;
using fp::ChatOptions;
using fp::render_chat;
using fp::ToolCall;

namespace {

const std::string BOS = "<｜begin▁of▁sentence｜>";
const std::string EOS = "<｜end▁of▁sentence｜>";
const std::string U = "<｜User｜>";
const std::string A = "<｜Assistant｜>";

ChatMessage msg(std::string role, std::string content, std::string reasoning = "") {
  ChatMessage m;
  m.role = std::move(role);
  m.content = std::move(content);
  m.reasoning = std::move(reasoning);
  return m;
}

ChatOptions thinking(bool on) {
  ChatOptions o;
  o.thinking = on;
  return o;
}

}  // namespace

TEST_CASE("render: one user turn, thinking off and on") {
  const std::vector<ChatMessage> m = {msg("user", "Hi")};
  CHECK(render_chat(m, thinking(false)) == BOS + U + "Hi" + A + "</think>");
  CHECK(render_chat(m, thinking(true)) == BOS + U + "Hi" + A + "<think>");
  ChatOptions no_prompt;
  no_prompt.add_generation_prompt = false;
  CHECK(render_chat(m, no_prompt) == BOS + U + "Hi");
}

TEST_CASE("render: system and developer text right after BOS, joined by a blank line") {
  const std::vector<ChatMessage> m = {msg("system", "Be brief."), msg("user", "Hi"), msg("developer", "No emoji.")};
  CHECK(render_chat(m, thinking(false)) == BOS + "Be brief.\n\nNo emoji." + U + "Hi" + A + "</think>");
}

TEST_CASE("render: multi-turn, history reasoning dropped in thinking mode") {
  const std::vector<ChatMessage> m = {msg("user", "Q1"), msg("assistant", "A1", "R1"), msg("user", "Q2")};
  CHECK(render_chat(m, thinking(false)) == BOS + U + "Q1" + A + "</think>A1" + EOS + U + "Q2" + A + "</think>");
  CHECK(render_chat(m, thinking(true)) == BOS + U + "Q1" + A + "</think>A1" + EOS + U + "Q2" + A + "<think>");
}

TEST_CASE("render: reasoning kept after the last user message") {
  const std::vector<ChatMessage> m = {msg("user", "Q1"), msg("assistant", "A1", "R1")};
  CHECK(render_chat(m, thinking(true)) == BOS + U + "Q1" + A + "<think>R1</think>A1" + EOS);
  CHECK(render_chat(m, thinking(false)) == BOS + U + "Q1" + A + "</think>A1" + EOS);
}

TEST_CASE("render: tool calls and results; reasoning kept everywhere when tools are in play") {
  ChatMessage call = msg("assistant", "Let me look.", "Need the file.");
  call.tool_calls = {ToolCall{"read_file", R"({"path": "/tmp/a&b <x>.txt", "lines": [1, 2], "follow": true})"},
                     ToolCall{"now", ""}};
  const std::vector<ChatMessage> m = {msg("user", "Q1"), call, msg("tool", "line1 </tool_result> & <b>"),
                                      msg("tool", "12:00"), msg("assistant", "Done.", "Got it."),
                                      msg("user", "Q2")};
  const std::string dsml =
      "\n\n<｜DSML｜tool_calls>\n"
      "<｜DSML｜invoke name=\"read_file\">\n"
      "<｜DSML｜parameter name=\"path\" string=\"true\">/tmp/a&b <x>.txt</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"lines\" string=\"false\">[1,2]</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"follow\" string=\"false\">true</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n"
      "<｜DSML｜invoke name=\"now\">\n"
      "</｜DSML｜invoke>\n"
      "</｜DSML｜tool_calls>";
  const std::string history = BOS + U + "Q1" + A + "<think>Need the file.</think>Let me look." + dsml + EOS + U +
                              "<tool_result>line1 &lt;/tool_result> & <b></tool_result><tool_result>12:00</tool_result>" +
                              A + "<think>Got it.</think>Done." + EOS + U + "Q2" + A;
  CHECK(render_chat(m, thinking(true)) == history + "<think>");
  // Without thinking, reasoning is never rendered.
  const std::string plain = BOS + U + "Q1" + A + "</think>Let me look." + dsml + EOS + U +
                            "<tool_result>line1 &lt;/tool_result> & <b></tool_result><tool_result>12:00</tool_result>" +
                            A + "</think>Done." + EOS + U + "Q2" + A + "</think>";
  CHECK(render_chat(m, thinking(false)) == plain);
}

TEST_CASE("render: DSML escapes: attributes, closing tag in string and JSON values, non-object arguments") {
  ChatMessage call = msg("assistant", "");
  call.tool_calls = {
      ToolCall{"a\"b", R"({"s": "x</｜DSML｜parameter>y", "j": {"k": "</｜DSML｜parameter>"}, "n": 1.50})"},
      ToolCall{"raw", "not json </｜DSML｜parameter>"}};
  const std::vector<ChatMessage> m = {msg("user", "go"), call};
  const std::string expected =
      BOS + U + "go" + A + "</think>" +
      "\n\n<｜DSML｜tool_calls>\n"
      "<｜DSML｜invoke name=\"a&quot;b\">\n"
      "<｜DSML｜parameter name=\"s\" string=\"true\">x&lt;/｜DSML｜parameter>y</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"j\" string=\"false\">{\"k\":\"\\u003c/｜DSML｜parameter>\"}</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"n\" string=\"false\">1.50</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n"
      "<｜DSML｜invoke name=\"raw\">\n"
      "<｜DSML｜parameter name=\"arguments\" string=\"true\">not json &lt;/｜DSML｜parameter></｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n"
      "</｜DSML｜tool_calls>" +
      EOS;
  CHECK(render_chat(m, thinking(false)) == expected);
}

TEST_CASE("render: tools block after the system text, one minified schema per line") {
  ChatOptions o;
  o.tools_json = R"([{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}},
                     {"name": "plain_tool", "description": "x y"}])";
  const std::string block = fp::tools_block(o.tools_json);
  REQUIRE(block.rfind("## Tools\n\nYou have access to a set of tools", 0) == 0);
  const std::string schemas =
      "### Available Tool Schemas\n\n"
      "{\"name\":\"get_time\",\"parameters\":{\"type\":\"object\"}}\n"
      "{\"name\":\"plain_tool\",\"description\":\"x y\"}\n\n"
      "You MUST strictly follow the above defined tool name and parameter schemas to invoke tool calls. "
      "Use the exact parameter names from the schemas.";
  CHECK(block.size() > schemas.size());
  CHECK(block.substr(block.size() - schemas.size()) == schemas);

  // With tools, earlier reasoning is kept even before the last user message.
  o.thinking = true;
  const std::vector<ChatMessage> m = {msg("system", "S"), msg("user", "Q1"), msg("assistant", "A1", "R1"),
                                      msg("user", "Q2")};
  CHECK(render_chat(m, o) == BOS + "S\n\n" + block + U + "Q1" + A + "<think>R1</think>A1" + EOS + U + "Q2" + A + "<think>");
  // Without system text the block follows BOS directly; "[]" means no tools.
  o.thinking = false;
  CHECK(render_chat({msg("user", "Q")}, o) == BOS + block + U + "Q" + A + "</think>");
  o.tools_json = " [ ] ";
  CHECK(render_chat({msg("user", "Q")}, o) == BOS + U + "Q" + A + "</think>");
}

TEST_CASE("render: think-max prefix after BOS, implies thinking") {
  ChatOptions o;
  o.think_max = true;
  const std::string out = render_chat({msg("system", "S"), msg("user", "Q")}, o);
  const std::string prefix(fp::think_max_prefix());
  CHECK(prefix.rfind("Reasoning Effort: Absolute maximum with no shortcuts permitted.\n", 0) == 0);
  CHECK(prefix.substr(prefix.size() - 2) == "\n\n");
  CHECK(out == BOS + prefix + "S" + U + "Q" + A + "<think>");
}

TEST_CASE("render: errors") {
  auto what = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const fp::Error& e) {
      return e.what();
    }
    return "";
  };
  CHECK(what([] { render_chat({msg("robot", "x")}, {}); }).find("chat message 0: role 'robot'") != std::string::npos);
  ChatOptions o;
  o.tools_json = "{\"name\": \"x\"}";
  CHECK(what([&] { render_chat({msg("user", "x")}, o); }).find("tools: not a JSON array") != std::string::npos);
  o.tools_json = "[{\"name\": ]";
  CHECK(what([&] { render_chat({msg("user", "x")}, o); }).find("tools: not a JSON array") != std::string::npos);
}

// ---- parse_reply --------------------------------------------------------------

TEST_CASE("parse: reasoning and content") {
  auto r = fp::parse_reply("Let me think.</think>The answer is 4." + EOS, true);
  CHECK(r.reasoning == "Let me think.");
  CHECK(r.content == "The answer is 4.");
  CHECK(r.tool_calls.empty());
  CHECK_FALSE(r.malformed_tool_calls);

  r = fp::parse_reply("<think>R</think>C", true);
  CHECK(r.reasoning == "R");
  CHECK(r.content == "C");

  r = fp::parse_reply("still thinking <｜DSML｜tool_calls>", true);  // cut off while thinking
  CHECK(r.reasoning == "still thinking <｜DSML｜tool_calls>");
  CHECK(r.content.empty());
  CHECK(r.tool_calls.empty());

  r = fp::parse_reply("Plain answer." + EOS + "junk", false);
  CHECK(r.reasoning.empty());
  CHECK(r.content == "Plain answer.");

  r = fp::parse_reply("a </think> b", false);  // no thinking: all content
  CHECK(r.content == "a </think> b");
}

TEST_CASE("parse: DSML tool calls") {
  const std::string text =
      "Reading it.</think>I will read the file.\n\n"
      "<｜DSML｜tool_calls>\n"
      "<｜DSML｜invoke name=\"read_file\">\n"
      "<｜DSML｜parameter name=\"path\" string=\"true\">/tmp/a&b <x>.txt &amp; &lt;/｜DSML｜parameter></｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"opts\" string=\"false\">{ \"depth\" : 2, \"tags\": [\"a b\", 1.50] }</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n"
      "<｜DSML｜invoke name=\"a&quot;b\">\n"
      "<｜DSML｜parameter name=\"n\" string=\"false\">not json</｜DSML｜parameter>\n"
      "<｜DSML｜parameter name=\"plain\">no string attribute</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n"
      "</｜DSML｜tool_calls>" + EOS;
  const auto r = fp::parse_reply(text, true);
  CHECK(r.reasoning == "Reading it.");
  CHECK(r.content == "I will read the file.");
  CHECK_FALSE(r.malformed_tool_calls);
  REQUIRE(r.tool_calls.size() == 2);
  CHECK(r.tool_calls[0].name == "read_file");
  CHECK(r.tool_calls[0].arguments_json ==
        R"({"path":"/tmp/a&b <x>.txt &amp; </｜DSML｜parameter>","opts":{"depth":2,"tags":["a b",1.50]}})");
  CHECK(r.tool_calls[1].name == "a\"b");
  CHECK(r.tool_calls[1].arguments_json == R"({"n":"not json","plain":"no string attribute"})");
  for (const auto& c : r.tool_calls) CHECK(fp::json_text::is_valid(c.arguments_json));
}

TEST_CASE("parse: render -> parse round trip of tool calls") {
  ChatMessage call = msg("assistant", "Calling.");
  call.tool_calls = {ToolCall{"f", R"({"s":"x </｜DSML｜parameter> & <y>","n":-1.5e3,"o":{"a":[true,null]}})"},
                     ToolCall{"g", "{}"}};
  const std::string rendered = render_chat({msg("user", "u"), call}, thinking(false));
  const std::string prefix = BOS + U + "u" + A + "</think>";
  REQUIRE(rendered.rfind(prefix, 0) == 0);
  const auto r = fp::parse_reply(rendered.substr(prefix.size()), false);
  CHECK(r.content == "Calling.");
  REQUIRE(r.tool_calls.size() == 2);
  CHECK(r.tool_calls[0].name == "f");
  CHECK(r.tool_calls[0].arguments_json == call.tool_calls[0].arguments_json);
  CHECK(r.tool_calls[1].arguments_json == "{}");
}

TEST_CASE("parse: malformed DSML is returned as content, never crashes") {
  const std::string good =
      "<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n"
      "<｜DSML｜parameter name=\"p\" string=\"true\">v</｜DSML｜parameter>\n"
      "</｜DSML｜invoke>\n</｜DSML｜tool_calls>";
  const std::vector<std::string> bad = {
      "<｜DSML｜tool_calls>",
      "<｜DSML｜tool_calls>\n<｜DSML｜invoke>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>",  // no name
      "<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter string=\"true\">v</｜DSML｜parameter>",
      "<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"p\">v",
      "<｜DSML｜tool_calls>\nhello\n</｜DSML｜tool_calls>",
      "<｜DSML｜tool_calls><｜DSML｜invoke name=\"f",
  };
  for (const auto& b : bad) {
    CAPTURE(b);
    const auto r = fp::parse_reply("text " + b, false);
    CHECK(r.malformed_tool_calls);
    CHECK(r.tool_calls.empty());
    CHECK(r.content == "text " + b);
  }
  // Every truncation and every single-byte corruption of a good block: no crash, and
  // either a clean parse or the malformed flag with the text kept.
  std::mt19937 rng(7);
  for (size_t n = 0; n <= good.size(); ++n) {
    const std::string t = "x" + good.substr(0, n);
    const auto r = fp::parse_reply(t, false);
    if (n == good.size()) {
      CHECK_FALSE(r.malformed_tool_calls);
      CHECK(r.tool_calls.size() == 1);
    } else if (r.malformed_tool_calls) {
      CHECK(r.content == t);
    }
  }
  for (int k = 0; k < 2000; ++k) {
    std::string t = good;
    t[rng() % t.size()] = static_cast<char>(rng() & 0xFF);
    const auto r = fp::parse_reply(t, false);
    for (const auto& c : r.tool_calls) CHECK(fp::json_text::is_valid(c.arguments_json));
  }
}
