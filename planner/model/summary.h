// A DS4 model at a glance, for `flashplan inspect` and the planner's reports: config,
// parameter count, bytes by dtype, bytes read per decoded token, validation result.
//
// "Bytes read per decoded token" counts what one decode step of the trunk must read:
// every tensor once, except the embedding (one row), the hash-routing table (one row)
// and the routed experts (n_expert_used of n_expert, by average). The MTP block is
// counted apart (one draft step: its layer the same way, plus the embedding row and
// the output head it shares with the trunk).
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "planner/gguf/gguf.h"
#include "planner/model/config.h"

namespace fp {

struct DTypeBytes {
  uint64_t tensors = 0;
  uint64_t bytes = 0;
};

struct ModelSummary {
  std::optional<ModelConfig> config;  // empty when the metadata is refused (see errors)
  uint64_t n_params = 0;              // elements of every tensor of the file(s)
  uint64_t tensor_bytes = 0;          // payload bytes of every tensor
  std::map<std::string, DTypeBytes> by_dtype;
  uint64_t decode_bytes_per_token = 0;
  uint64_t mtp_bytes_per_token = 0;   // 0 without MTP
  std::vector<std::string> errors, warnings;
  std::string mtp_notice;
};

// Never throws for a bad model: config and validation errors land in `errors`.
ModelSummary summarize_model(const gguf::File& f, const gguf::File* mtp = nullptr);

std::string summary_text(const ModelSummary& s);
nlohmann::ordered_json summary_json(const ModelSummary& s);

}  // namespace fp
