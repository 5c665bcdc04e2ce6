// One side of `flashplan proof`: a configuration given as a flag string (the same flags
// as `flashplan run`: --backend, --threads, --numerics, --chunk, --mtp-draft, --temp,
// --seed, ...), opened on its own, run over every prompt with the shared generate loop,
// recording each generated token and the top-2 of the logits it was chosen from.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tools/engine_args.h"

namespace fp::proof {

struct Top2 {
  int32_t id[2] = {-1, -1};
  float logit[2] = {0, 0};
};

// A prompt as given: text (tokenized by each side's engine) or token ids.
struct Prompt {
  std::string text;
  std::vector<int32_t> ids;  // used when non-empty
  bool is_ids() const { return !ids.empty(); }
};

struct PromptResult {
  std::vector<int32_t> prompt;   // ids fed
  std::vector<int32_t> tokens;   // generated
  std::vector<Top2> top;         // per generated token
  std::vector<std::string> text; // per generated token: its piece
};

struct SideResult {
  std::string name, flags;
  std::string backend, model, device;
  std::vector<PromptResult> prompts;
};

struct Side {
  std::string name, flags;
  cli::EngineArgs engine;
  cli::SamplingArgs sampling;
};

// Parses `flags` for side `name` ("--a"); a positional MODEL in them overrides
// `default_model`. Bad flags are an fp::Error that names the side.
Side parse_side(const std::string& name, const std::string& flags, const std::string& default_model);

struct RunOptions {
  int64_t max_tokens = 32;
  bool no_bos = false;
  bool ignore_eos = false;
};

// Opens the side's engine, runs every prompt in a fresh session, closes the engine.
SideResult run_side(const Side& side, const std::vector<Prompt>& prompts, const RunOptions& o);

}  // namespace fp::proof
