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

#include "ops/core/error.h"
#include "planner/model/config.h"
#include "runtime/sampling/sampler.h"

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
  // Appends `tokens` like append() and returns the next token drawn by `sampler` from
  // the last position's logits (exactly sampler.sample(append(tokens)): same token, one
  // draw of the sampler's stream unless greedy). A backend may sample where the logits
  // are (the CUDA session does, on the device, copying back only the token and the
  // advanced RNG state); append()'s logits are then not available for this step.
  virtual int32_t append_sample(std::span<const int32_t> tokens, Sampler& sampler) {
    return sampler.sample(append(tokens));
  }
  virtual void reset() = 0;                    // back to an empty sequence
  virtual uint64_t position() const = 0;       // tokens appended so far
  virtual uint64_t max_context() const = 0;
  // Bytes of attention state (KV rows, compressor and indexer state) that hold the
  // sequence at its current position: what a snapshot of it would have to save. 0 when
  // the backend does not report it. `flashplan bench` writes it as kvcache_bytes.
  virtual uint64_t kv_bytes() const { return 0; }

  // ---- speculative decoding (MTP) and full-sequence logits; optional per backend ----
  // Appends `tokens` and returns the logits of every appended position, [n][n_vocab]
  // row-major (valid until the next call).
  virtual std::span<const float> append_all(std::span<const int32_t> tokens) {
    fail(backend(), " session: append_all is not supported");
  }
  // Rolls the sequence back to its first n tokens: n <= position() and at most
  // max_rollback() positions back (a rejected MTP draft).
  virtual void truncate(uint64_t n) { fail(backend(), " session: truncate is not supported"); }
  virtual uint64_t max_rollback() const { return 0; }
  // Largest MTP draft this session was set up for; 0 = no MTP.
  virtual int mtp_max_draft() const { return 0; }
  // `next` is the token that will be appended at position(); returns up to k draft
  // tokens for the positions after it (the MTP head's argmax, chained).
  virtual std::vector<int32_t> mtp_draft(int32_t next, int k) { return {}; }

 protected:
  virtual const char* backend() const { return "this"; }
};

// How an engine got its weights, for run's summary and --json.
struct LoadInfo {
  std::string source = "mmap";  // "mmap" (CPU: the file mapped, read on first use), "file", "random:SEED"
  bool direct_io = false;       // file: every read used O_DIRECT (else buffered)
  uint64_t bytes = 0;           // weight bytes filled (0 for mmap)
  uint64_t host_bytes = 0;      // of which in pinned host memory
  double seconds = 0;
  std::string plan;             // the plan it runs, empty when none
  double gib_per_s() const { return seconds > 0 ? double(bytes) / double(1ull << 30) / seconds : 0; }
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual const ModelConfig& config() const = 0;
  virtual const Tokenizer& tokenizer() const = 0;
  virtual std::string backend_name() const = 0;  // "cpu", "cuda"
  virtual std::string model_name() const = 0;    // shown by /v1/models
  // The device it runs on, for reports ("NVIDIA H200, cc 9.0, 132 SMs"); empty when
  // the backend has nothing to add to backend_name().
  virtual std::string device_name() const { return {}; }
  virtual LoadInfo load_info() const { return {}; }
  virtual std::unique_ptr<Session> new_session() = 0;
};

}  // namespace fp
