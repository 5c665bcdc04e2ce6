// The subcommand registry of the `flashplan` binary. Each tools/cmd_<name>.cpp
// registers one subcommand with FP_COMMAND; main() builds the CLI11 app from the
// registry, runs the chosen command, and is the only place that turns an fp::Error
// into a one-line message and an exit status.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace fp::cli {

// setup() declares the subcommand's options on `app` and returns the function to run
// after parsing; its return value is the exit status.
struct Command {
  std::string name;
  std::string help;
  std::function<std::function<int()>(CLI::App& app)> setup;
  int error_status = 1;  // exit status when the command throws (diff uses 2, like diff(1))
};

std::vector<Command>& registry();

struct Registrar {
  explicit Registrar(Command c) { registry().push_back(std::move(c)); }
};

}  // namespace fp::cli

#define FP_CONCAT_INNER(a, b) a##b
#define FP_CONCAT(a, b) FP_CONCAT_INNER(a, b)
#define FP_COMMAND(...) static ::fp::cli::Registrar FP_CONCAT(fp_command_, __LINE__){::fp::cli::Command{__VA_ARGS__}}
