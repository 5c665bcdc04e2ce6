// `flashplan proof [MODEL] --a "<flags>" --b "<flags>" [-p PROMPT]... [--prompts FILE]
// [--ids "0 5 9"]... [-n N] [--json]`: runs the same prompts under two configurations
// (backends, thread counts, chunk sizes, MTP drafting, numerics, sampling seeds) and
// proves the generated tokens byte-identical, or reports the first divergence of each
// prompt: where, both tokens with their text, and the top-2 logits each side chose from.
// The sides run one after the other (one model in memory at a time).
// Exit status: 0 identical, 1 diverged, 2 error (bad flags included).
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "ops/core/error.h"
#include "tools/command.h"
#include "runtime/tokenizer/utf8.h"
#include "tools/proof_run.h"

namespace {

using fp::proof::PromptResult;
using fp::proof::SideResult;

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  std::string t = s;
  for (char& c : t)
    if (c == ',') c = ' ';
  std::istringstream in(t);
  std::string w;
  while (in >> w) {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(w, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != w.size() || v < 0 || v > INT32_MAX) fp::fail("--ids \"", s, "\": '", w, "' is not a token id");
    ids.push_back(int32_t(v));
  }
  if (ids.empty()) fp::fail("--ids \"", s, "\": no token ids");
  return ids;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fp::fail(path, ": cannot open --prompts file");
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) lines.push_back(line);
  }
  if (lines.empty()) fp::fail(path, ": no prompts (one per line expected)");
  return lines;
}

// Printable form of a token's text: quoted, control bytes and bytes that are not
// valid UTF-8 (a token may hold part of a character) as \xNN.
std::string shown(const std::string& s) {
  std::string o = "\"";
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t len = c >= 0x80 ? fp::utf8::valid_sequence_length(s, i) : 1;
    if (c >= 0x80 && len > 0) {
      o.append(s, i, len);
      i += len;
      continue;
    }
    if (c == '\n') o += "\\n";
    else if (c == '\t') o += "\\t";
    else if (c == '"' || c == '\\') o += std::string("\\") + char(c);
    else if (c < 0x20 || c >= 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      o += b;
    } else o += char(c);
    ++i;
  }
  return o + "\"";
}

struct Divergence {
  size_t prompt = 0;
  int64_t position = -1;       // index in the generated tokens; -1: the prompts differ
  int64_t seq_position = -1;   // position in the sequence (prompt + generated)
};

// First index where the two prompt results differ, or nothing.
std::optional<Divergence> compare(size_t i, const PromptResult& a, const PromptResult& b) {
  if (a.prompt != b.prompt) return Divergence{i, -1, -1};
  const size_t n = std::min(a.tokens.size(), b.tokens.size());
  for (size_t k = 0; k < n; ++k)
    if (a.tokens[k] != b.tokens[k]) return Divergence{i, int64_t(k), int64_t(a.prompt.size() + k)};
  if (a.tokens.size() != b.tokens.size()) return Divergence{i, int64_t(n), int64_t(a.prompt.size() + n)};
  return std::nullopt;
}

nlohmann::json side_token(const PromptResult& r, int64_t k) {
  if (k < 0 || size_t(k) >= r.tokens.size()) return nullptr;
  nlohmann::json top = nlohmann::json::array();
  for (int j = 0; j < 2; ++j)
    if (r.top[size_t(k)].id[j] >= 0) top.push_back({{"id", r.top[size_t(k)].id[j]}, {"logit", r.top[size_t(k)].logit[j]}});
  return {{"id", r.tokens[size_t(k)]}, {"text", r.text[size_t(k)]}, {"top2", top}};
}

void print_side_token(const char* name, const PromptResult& r, int64_t k) {
  if (size_t(k) >= r.tokens.size()) {
    std::printf("  %s: (generation ended after %zu tokens)\n", name, r.tokens.size());
    return;
  }
  const auto& t = r.top[size_t(k)];
  std::printf("  %s: %d %s   top-2: %d (%.6g), %d (%.6g)\n", name, r.tokens[size_t(k)], shown(r.text[size_t(k)]).c_str(),
              t.id[0], double(t.logit[0]), t.id[1], double(t.logit[1]));
}

std::string side_desc(const SideResult& s) {
  std::string d = s.backend + ", " + s.model;
  if (!s.device.empty()) d += ", " + s.device;
  return d;
}

}  // namespace

FP_COMMAND("proof", "Run the same prompts under two configurations: identical tokens, or the first divergence",
           [](CLI::App& app) {
  struct Opts {
    std::string model, a, b, prompts_file;
    std::vector<std::string> prompts, ids;
    fp::proof::RunOptions run;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  o->run.max_tokens = 32;
  app.add_option("model", o->model, "GGUF model for both sides (default: the built-in tiny model)");
  app.add_option("--a", o->a, "flags of configuration A, as for `flashplan run` (e.g. \"--threads 1\")")->required();
  app.add_option("--b", o->b, "flags of configuration B")->required();
  app.add_option("-p,--prompt", o->prompts, "a prompt (repeatable)");
  app.add_option("--prompts", o->prompts_file, "file of prompts, one per line");
  app.add_option("--ids", o->ids, "a prompt as token ids, \"0 17 42\" (repeatable)");
  app.add_option("-n,--n-predict", o->run.max_tokens, "tokens to generate per prompt")->capture_default_str();
  app.add_flag("--no-bos", o->run.no_bos, "do not put BOS in front of text prompts");
  app.add_flag("--ignore-eos", o->run.ignore_eos, "keep generating after end-of-sentence");
  app.add_flag("--json", o->json, "print one JSON object");
  return [o]() {
    if (o->run.max_tokens <= 0) fp::fail("-n ", o->run.max_tokens, ", expected > 0");
    std::vector<fp::proof::Prompt> prompts;
    for (const auto& p : o->prompts) prompts.push_back({p, {}});
    if (!o->prompts_file.empty())
      for (const auto& p : read_lines(o->prompts_file)) prompts.push_back({p, {}});
    for (const auto& s : o->ids) prompts.push_back({s, parse_ids(s)});
    if (prompts.empty()) fp::fail("no prompts; give -p TEXT, --prompts FILE or --ids \"ID ...\"");
    const fp::proof::Side side_a = fp::proof::parse_side("--a", o->a, o->model);
    const fp::proof::Side side_b = fp::proof::parse_side("--b", o->b, o->model);

    const SideResult a = fp::proof::run_side(side_a, prompts, o->run);
    const SideResult b = fp::proof::run_side(side_b, prompts, o->run);

    std::vector<std::optional<Divergence>> div;
    size_t diverged = 0, total = 0;
    for (size_t i = 0; i < prompts.size(); ++i) {
      div.push_back(compare(i, a.prompts[i], b.prompts[i]));
      diverged += div.back().has_value();
      total += a.prompts[i].tokens.size();
    }

    if (o->json) {
      nlohmann::json j;
      j["identical"] = diverged == 0;
      for (const SideResult* s : {&a, &b})
        j[s == &a ? "a" : "b"] = {{"flags", s->flags}, {"backend", s->backend}, {"model", s->model}, {"device", s->device}};
      j["prompts"] = nlohmann::json::array();
      nlohmann::json first = nullptr;
      for (size_t i = 0; i < prompts.size(); ++i) {
        const auto& pa = a.prompts[i];
        const auto& pb = b.prompts[i];
        nlohmann::json p = {{"index", i},
                            {"prompt_tokens", pa.prompt.size()},
                            {"a_generated", pa.tokens.size()},
                            {"b_generated", pb.tokens.size()},
                            {"identical", !div[i].has_value()},
                            {"a_tokens", pa.tokens},
                            {"b_tokens", pb.tokens}};
        if (div[i]) {
          nlohmann::json d = {{"prompt", i},
                              {"position", div[i]->position},
                              {"sequence_position", div[i]->seq_position},
                              {"a", side_token(pa, div[i]->position)},
                              {"b", side_token(pb, div[i]->position)}};
          if (div[i]->position < 0) d["reason"] = "the prompts tokenize differently";
          p["divergence"] = d;
          if (first.is_null()) first = d;
        }
        j["prompts"].push_back(p);
      }
      j["divergence"] = first;
      std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      return diverged ? 1 : 0;
    }

    auto flags = [](const std::string& f) { return f.empty() ? std::string("(defaults)") : f; };
    std::printf("A: %s  [%s]\nB: %s  [%s]\n", flags(o->a).c_str(), side_desc(a).c_str(), flags(o->b).c_str(),
                side_desc(b).c_str());
    for (size_t i = 0; i < prompts.size(); ++i) {
      const auto& pa = a.prompts[i];
      const auto& pb = b.prompts[i];
      if (!div[i]) {
        std::printf("prompt %zu (%zu tokens): %zu generated tokens identical\n", i, pa.prompt.size(), pa.tokens.size());
        continue;
      }
      if (div[i]->position < 0) {
        std::printf("prompt %zu: the prompt tokenizes differently (A %zu tokens, B %zu tokens)\n", i, pa.prompt.size(),
                    pb.prompt.size());
        continue;
      }
      const int64_t k = div[i]->position;
      std::printf("prompt %zu (%zu tokens): DIVERGES at generated token %lld (sequence position %lld)\n", i,
                  pa.prompt.size(), (long long)k, (long long)div[i]->seq_position);
      print_side_token("A", pa, k);
      print_side_token("B", pb, k);
      std::string common;
      for (int64_t t = 0; t < k; ++t) common += pa.text[size_t(t)];
      std::printf("  identical before it: %s\n", shown(common).c_str());
    }
    if (diverged) std::printf("DIVERGED: %zu of %zu prompts\n", diverged, prompts.size());
    else std::printf("IDENTICAL: %zu prompts, %zu generated tokens\n", prompts.size(), total);
    return diverged ? 1 : 0;
  };
}, 2);
