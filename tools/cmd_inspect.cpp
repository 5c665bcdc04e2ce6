// `flashplan inspect FILE [--json]`: describe a file flashplan reads or writes.
//
// This file only dispatches: it reads the first bytes and runs the registered kind
// that recognises them (tools/inspect.h; GGUF in tools/inspect_gguf.cpp).
#include <cerrno>
#include <cstring>
#include <fstream>

#include "ops/core/error.h"
#include "tools/command.h"
#include "tools/inspect.h"

namespace fp::cli::inspect {

std::vector<Kind>& kinds() {
  static std::vector<Kind> k;
  return k;
}

std::vector<GgufSection>& gguf_sections() {
  static std::vector<GgufSection> s;
  return s;
}

namespace {

int run(const std::string& path, bool json) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open ", path, ": ", std::strerror(errno));
  uint8_t head[64] = {};
  in.read(reinterpret_cast<char*>(head), sizeof head);
  const std::span<const uint8_t> got(head, size_t(in.gcount()));
  for (const Kind& k : kinds())
    if (k.detect(path, got)) return k.run(path, json);

  std::string first, known;
  for (size_t i = 0; i < std::min<size_t>(got.size(), 8); ++i) first += str(i ? " " : "", std::hex, unsigned(got[i]) >> 4, unsigned(got[i]) & 15);
  for (const Kind& k : kinds()) known += str(known.empty() ? "" : " or ", k.name, " (", k.signature, ")");
  fail(path, ": not a kind of file inspect knows (first bytes: ", first.empty() ? "none" : first, "), expected ", known);
}

}  // namespace
}  // namespace fp::cli::inspect

FP_COMMAND("inspect", "Describe a GGUF (metadata and tensor table) or another flashplan file", [](CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  app.add_option("file", *path, "File to describe")->required();
  app.add_flag("--json", *json, "Print one JSON object instead of text");
  return [path, json]() { return fp::cli::inspect::run(*path, *json); };
});
