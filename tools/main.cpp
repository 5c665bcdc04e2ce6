// flashplan: one binary, git-style subcommands (see tools/cmd_*.cpp).
#include <algorithm>
#include <cstdio>
#include <exception>

#include "ops/core/error.h"
#include "tools/build_commit.h"
#include "tools/command.h"

namespace fp::cli {
std::vector<Command>& registry() {
  static std::vector<Command> r;
  return r;
}
}  // namespace fp::cli

int main(int argc, char** argv) {
  using fp::cli::registry;
  CLI::App app{"flashplan: plan-compiled runtime for DeepSeek V4 Flash"};
  app.set_version_flag("--version", std::string("flashplan ") + FLASHPLAN_VERSION + " (" + fp::build_commit() + ")");
  app.require_subcommand(1);

  auto& cmds = registry();
  std::sort(cmds.begin(), cmds.end(), [](auto& a, auto& b) { return a.name < b.name; });
  std::vector<std::pair<CLI::App*, std::function<int()>>> runners;
  std::vector<int> error_status;
  for (auto& c : cmds) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    runners.emplace_back(sub, c.setup(*sub));
    error_status.push_back(c.error_status);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // A command with its own error status (diff, proof: 2) keeps it for bad flags too,
    // with the one-line message its other errors get; --help and the rest go to CLI11.
    for (size_t i = 0; i < runners.size(); ++i)
      if (e.get_exit_code() != 0 && runners[i].first->parsed() && error_status[i] != 1) {
        std::fprintf(stderr, "flashplan %s: error: %s\n", cmds[i].name.c_str(), e.what());
        return error_status[i];
      }
    return app.exit(e);
  }
  for (size_t i = 0; i < runners.size(); ++i) {
    if (!runners[i].first->parsed()) continue;
    try {
      return runners[i].second();
    } catch (const fp::Error& e) {
      std::fprintf(stderr, "flashplan %s: error: %s\n", cmds[i].name.c_str(), e.what());
    } catch (const std::bad_alloc&) {
      std::fprintf(stderr, "flashplan %s: error: out of memory\n", cmds[i].name.c_str());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "flashplan %s: error: %s\n", cmds[i].name.c_str(), e.what());
    }
    return error_status[i];
  }
  return 1;
}
