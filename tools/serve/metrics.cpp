// Prometheus text exposition of the server's counters (see metrics.h).
#include "tools/serve/metrics.h"

#include <cmath>
#include <cstdio>

namespace fp::serve {

namespace {

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void sample(std::string& out, const std::string& name, double v) { out += name + ' ' + number(v) + '\n'; }

const std::vector<double> kLatencyBuckets = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
const std::vector<double> kSpeedBuckets = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000};

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::write(std::string& out, const std::string& name) const {
  uint64_t cumulative = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cumulative += counts_[i];
    const std::string le = i < bounds_.size() ? number(bounds_[i]) : "+Inf";
    out += name + "_bucket{le=\"" + le + "\"} " + std::to_string(cumulative) + '\n';
  }
  sample(out, name + "_sum", sum_);
  out += name + "_count " + std::to_string(count_) + '\n';
}

Metrics::Metrics()
    : ttft_(kLatencyBuckets), queue_(kLatencyBuckets), e2e_(kLatencyBuckets), decode_tps_(kSpeedBuckets) {}

void Metrics::request_done(const std::string& endpoint, int status) {
  std::lock_guard lock(mu_);
  ++requests_[{endpoint, status}];
}

void Metrics::generation_done(uint64_t prompt_tokens, uint64_t generated_tokens, double queue_s, double ttft_s,
                              double decode_s, double total_s, const std::string& finish_reason) {
  std::lock_guard lock(mu_);
  prompt_tokens_ += prompt_tokens;
  generated_tokens_ += generated_tokens;
  ++finished_[finish_reason];
  queue_.observe(queue_s);
  e2e_.observe(total_s);
  if (generated_tokens > 0) ttft_.observe(ttft_s);
  if (generated_tokens > 1 && decode_s > 0) {
    decode_seconds_ += decode_s;
    decode_tokens_ += generated_tokens - 1;
    last_decode_tps_ = double(generated_tokens - 1) / decode_s;
    decode_tps_.observe(last_decode_tps_);
  }
}

std::string Metrics::render(size_t queue_depth, size_t running, size_t slots) const {
  std::lock_guard lock(mu_);
  std::string out;
  header(out, "flashplan_requests_total", "counter", "HTTP requests answered, by endpoint and status.");
  for (const auto& [key, n] : requests_)
    out += "flashplan_requests_total{endpoint=\"" + key.first + "\",status=\"" + std::to_string(key.second) +
           "\"} " + std::to_string(n) + '\n';
  header(out, "flashplan_generations_total", "counter", "Generations finished, by finish reason.");
  for (const auto& [reason, n] : finished_)
    out += "flashplan_generations_total{finish_reason=\"" + reason + "\"} " + std::to_string(n) + '\n';
  header(out, "flashplan_prompt_tokens_total", "counter", "Prompt tokens prefilled.");
  sample(out, "flashplan_prompt_tokens_total", double(prompt_tokens_));
  header(out, "flashplan_generation_tokens_total", "counter", "Tokens generated.");
  sample(out, "flashplan_generation_tokens_total", double(generated_tokens_));
  header(out, "flashplan_decode_seconds_total", "counter",
         "Seconds spent decoding after each generation's first token (rate of tokens over it = decode tok/s).");
  sample(out, "flashplan_decode_seconds_total", decode_seconds_);
  header(out, "flashplan_decode_tokens_total", "counter", "Tokens generated after each generation's first token.");
  sample(out, "flashplan_decode_tokens_total", double(decode_tokens_));
  header(out, "flashplan_decode_tokens_per_second", "gauge", "Decode speed of the last finished generation.");
  sample(out, "flashplan_decode_tokens_per_second", last_decode_tps_);
  header(out, "flashplan_request_decode_tokens_per_second", "histogram", "Decode speed per generation.");
  decode_tps_.write(out, "flashplan_request_decode_tokens_per_second");
  header(out, "flashplan_time_to_first_token_seconds", "histogram",
         "From arrival to the first generated token (queueing and prefill included).");
  ttft_.write(out, "flashplan_time_to_first_token_seconds");
  header(out, "flashplan_queue_wait_seconds", "histogram", "From arrival to getting a slot.");
  queue_.write(out, "flashplan_queue_wait_seconds");
  header(out, "flashplan_request_duration_seconds", "histogram", "From arrival to the last token.");
  e2e_.write(out, "flashplan_request_duration_seconds");
  header(out, "flashplan_queue_depth", "gauge", "Requests waiting for a slot.");
  sample(out, "flashplan_queue_depth", double(queue_depth));
  header(out, "flashplan_requests_running", "gauge", "Requests holding a slot.");
  sample(out, "flashplan_requests_running", double(running));
  header(out, "flashplan_slots", "gauge", "Sequences the server runs at once (--parallel).");
  sample(out, "flashplan_slots", double(slots));
  return out;
}

}  // namespace fp::serve
