// The server's Prometheus metrics (GET /metrics, text format 0.0.4). Counters and
// histograms are updated by the HTTP threads (requests, statuses) and the scheduler
// thread (tokens, timings); gauges (queue depth, running) are read from the
// scheduler when scraped.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace fp::serve {

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double v);
  // Appends `name_bucket{le=...}`, `name_sum`, `name_count` lines.
  void write(std::string& out, const std::string& name) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; last = +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();

  // One finished HTTP request on `endpoint` ("chat", "completions", ...) with its status.
  void request_done(const std::string& endpoint, int status);
  // One finished generation.
  void generation_done(uint64_t prompt_tokens, uint64_t generated_tokens, double queue_s, double ttft_s,
                       double decode_s, double total_s, const std::string& finish_reason);

  // The whole exposition; the gauges are passed in by the caller.
  std::string render(size_t queue_depth, size_t running, size_t slots) const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, uint64_t> finished_;  // by finish reason
  uint64_t prompt_tokens_ = 0, generated_tokens_ = 0;
  double decode_seconds_ = 0;
  uint64_t decode_tokens_ = 0;  // tokens after the first, over decode_seconds_
  double last_decode_tps_ = 0;
  Histogram ttft_, queue_, e2e_, decode_tps_;
};

}  // namespace fp::serve
