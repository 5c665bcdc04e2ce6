// The job's output channel (see job.h).
#include "tools/serve/job.h"

namespace fp::serve {

const char* finish_name(Finish f) {
  switch (f) {
    case Finish::Stop: return "stop";
    case Finish::Length: return "length";
    case Finish::Cancelled: return "cancelled";
    case Finish::Error: return "error";
    case Finish::None: break;
  }
  return "none";
}

Job::Job(GenerationInput in) : in_(std::move(in)), stream_(in_.stop) {}

bool Job::take(JobOutput& out, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  auto has_news = [&] { return finished_ || !pending_.token_ids.empty() || !pending_.text.empty(); };
  if (!cv_.wait_for(lock, timeout, has_news)) return false;
  out.token_ids.insert(out.token_ids.end(), pending_.token_ids.begin(), pending_.token_ids.end());
  for (auto& lp : pending_.logprobs) out.logprobs.push_back(std::move(lp));
  out.text += pending_.text;
  out.finished = finished_;
  out.finish = pending_.finish;
  out.error = pending_.error;
  pending_.token_ids.clear();
  pending_.logprobs.clear();
  pending_.text.clear();
  return true;
}

bool Job::push_token(int32_t id, std::string_view bytes, std::optional<TokenLogprob> lp) {
  std::lock_guard lock(mu_);
  ++generated_;
  pending_.token_ids.push_back(id);
  if (lp) pending_.logprobs.push_back(std::move(*lp));
  const bool stopped = stream_.push(bytes);
  pending_.text += stream_.take_ready();
  cv_.notify_all();
  return stopped;
}

void Job::finish(Finish f, std::string error) {
  std::lock_guard lock(mu_);
  if (finished_) return;
  pending_.text += stream_.take_rest();
  pending_.finish = f;
  pending_.error = std::move(error);
  finished_ = true;
  cv_.notify_all();
}

}  // namespace fp::serve
