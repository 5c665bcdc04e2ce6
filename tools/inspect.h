// `flashplan inspect` dispatch: one entry per kind of file it can describe.
//
// cmd_inspect.cpp reads a file's first bytes and hands the file to the first kind
// whose detect() accepts them. To teach inspect a new kind of file (plans: FlatBuffers
// identifier "FPLN" at bytes 4..7), add a tools/inspect_<kind>.cpp that registers a
// Kind with FP_INSPECT_KIND. To add a section to the text view of a GGUF (a DS4 model
// summary), register a GgufSection with FP_INSPECT_GGUF_SECTION; `--json` output of
// a GGUF stays the documented object plus one key per section that applies ("model").
#pragma once
#include <cstdint>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

namespace fp::gguf {
class File;
}

namespace fp::cli::inspect {

struct Kind {
  std::string name;         // "gguf", "plan"
  std::string signature;    // for errors: how the kind is recognised, e.g. magic "GGUF" at byte 0
  // head: up to the first 64 bytes of the file at `path`.
  std::function<bool(const std::string& path, std::span<const uint8_t> head)> detect;
  std::function<int(const std::string& path, bool json)> run;  // prints to stdout, returns the exit status
};
std::vector<Kind>& kinds();

struct GgufSection {
  std::string name;
  // Prints the section (text view only); prints nothing when it does not apply.
  std::function<void(const gguf::File& f, std::FILE* out)> text;
  // Adds the section's key to the `--json` object; may be empty, adds nothing when it
  // does not apply.
  std::function<void(const gguf::File& f, nlohmann::ordered_json& out)> json;
};
std::vector<GgufSection>& gguf_sections();

struct KindRegistrar {
  explicit KindRegistrar(Kind k) { kinds().push_back(std::move(k)); }
};
struct GgufSectionRegistrar {
  explicit GgufSectionRegistrar(GgufSection s) { gguf_sections().push_back(std::move(s)); }
};

}  // namespace fp::cli::inspect

#define FP_INSPECT_CONCAT_INNER(a, b) a##b
#define FP_INSPECT_CONCAT(a, b) FP_INSPECT_CONCAT_INNER(a, b)
#define FP_INSPECT_KIND(...) \
  static ::fp::cli::inspect::KindRegistrar FP_INSPECT_CONCAT(fp_inspect_kind_, __LINE__){::fp::cli::inspect::Kind{__VA_ARGS__}}
#define FP_INSPECT_GGUF_SECTION(...)                                                           \
  static ::fp::cli::inspect::GgufSectionRegistrar FP_INSPECT_CONCAT(fp_inspect_section_, __LINE__){ \
      ::fp::cli::inspect::GgufSection{__VA_ARGS__}}
