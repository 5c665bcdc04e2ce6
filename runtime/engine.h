// The runtime's front door: a loaded model on one backend (CPU reference executor or
// CUDA) that starts independent sequences. Everything above the runtime (run, chat,
// serve, bench, proof) talks to these two interfaces only, so the request/session
// split already fits batching several sequences later.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "planner/model/config.h"

namespace fp {

class Tokenizer;

// One sequence's state (KV cache, compressor and indexer state, position).
class Session {
 public:
  virtual ~Session() = default;
  // Appends `tokens` at the current position (prefill in the plan's chunk sizes) and
  // returns the logits of the last appended position (n_vocab floats, valid until the
  // next call). Throws fp::Error when the context would overflow.
  virtual std::span<const float> append(std::span<const int32_t> tokens) = 0;
  virtual void reset() = 0;                    // back to an empty sequence
  virtual uint64_t position() const = 0;       // tokens appended so far
  virtual uint64_t max_context() const = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual const ModelConfig& config() const = 0;
  virtual const Tokenizer& tokenizer() const = 0;
  virtual std::string backend_name() const = 0;  // "cpu", "cuda"
  virtual std::string model_name() const = 0;    // shown by /v1/models
  virtual std::unique_ptr<Session> new_session() = 0;
};

}  // namespace fp
