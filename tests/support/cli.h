// Running the `flashplan` binary from doctest suites: a scratch directory that removes
// itself, and one call that runs the binary with arguments and captures its exit
// status, stdout and stderr (an exit status of 128 + N means it died by signal N).
#pragma once
#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace fp::test {

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const char* prefix = "fp_test") {
    std::string tmpl = (std::filesystem::temp_directory_path() / (std::string(prefix) + "_XXXXXX")).string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

struct Run {
  int status = -1;
  std::string out, err;
};

// Runs `flashplan ARGS` (each argument single-quoted for the shell).
inline Run run_flashplan(const std::vector<std::string>& args) {
  TempDir dir("fp_cli");
  std::string cmd = std::string("'") + FLASHPLAN_BINARY + "'";
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " >'" + dir / "out" + "' 2>'" + dir / "err" + "'";
  Run r;
  const int rc = std::system(cmd.c_str());
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
  r.out = slurp(dir / "out");
  r.err = slurp(dir / "err");
  return r;
}

}  // namespace fp::test
