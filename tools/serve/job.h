// A Job is one generation request as the scheduler sees it: immutable inputs (prompt
// ids, limits, sampling, stop strings) and an output channel the HTTP thread drains.
// The split matters for batching later: a Job never touches an engine Session; the
// scheduler binds it to one of its slots (each slot owns a Session) for as long as it
// runs, so a future batched step only changes the scheduler, not the HTTP layer.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "tools/serve/text_stream.h"

namespace fp::serve {

using Clock = std::chrono::steady_clock;

struct SamplingOptions {
  float temperature = 1.0f;  // 0 = greedy
  float top_p = 1.0f;
  int32_t top_k = 0;  // 0 = off
  float min_p = 0.0f;
  std::optional<uint64_t> seed;  // none: the scheduler draws one
};

struct GenerationInput {
  std::vector<int32_t> prompt;
  uint32_t max_tokens = 16;
  SamplingOptions sampling;
  std::vector<std::string> stop;
  int32_t top_logprobs = -1;  // < 0: no logprobs; 0..20: the chosen token's plus that many alternatives
  bool ignore_eos = false;    // vLLM: generate past end-of-sequence (benchmarks, load tests)
};

struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // best first
};

enum class Finish { None, Stop, Length, Cancelled, Error };
const char* finish_name(Finish f);  // "stop", "length", "cancelled", "error"

// What the HTTP side takes from a job at once: everything produced since last time.
struct JobOutput {
  std::vector<int32_t> token_ids;
  std::vector<TokenLogprob> logprobs;  // one per token when logprobs were asked for
  std::string text;                    // safe-to-send text (see TextStream)
  bool finished = false;
  Finish finish = Finish::None;
  std::string error;  // for Finish::Error
};

class Job {
 public:
  explicit Job(GenerationInput in);

  const GenerationInput& input() const { return in_; }

  // ---- HTTP side ----
  // Waits up to `timeout` for output and moves what is there into `out` (appending).
  // Returns true when there was something new (or the job finished).
  bool take(JobOutput& out, std::chrono::milliseconds timeout);
  // The client is gone or gave up: the scheduler frees the slot before its next step.
  void cancel() { cancelled_.store(true); }
  bool cancelled() const { return cancelled_.load(); }

  // ---- scheduler side ----
  // Appends one generated token; `bytes` is its text ("" for end-of-sequence). Returns
  // true when a stop string completed.
  bool push_token(int32_t id, std::string_view bytes, std::optional<TokenLogprob> lp);
  void finish(Finish f, std::string error = {});

  // Timestamps (set and read by the scheduler).
  Clock::time_point arrived = Clock::now(), started, first_token;
  uint32_t generated() const { return generated_; }

 private:
  GenerationInput in_;
  std::atomic<bool> cancelled_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  TextStream stream_;
  JobOutput pending_;
  uint32_t generated_ = 0;
  bool finished_ = false;
};

}  // namespace fp::serve
