// The request queue and the generation loop (see scheduler.h).
#include "tools/serve/scheduler.h"

#include <random>

#include "ops/core/error.h"
#include "runtime/tokenizer/tokenizer.h"
#include "tools/serve/api_error.h"
#include "tools/serve/logprobs.h"
#include "tools/serve/token_sampler.h"

namespace fp::serve {

struct Scheduler::Slot {
  std::unique_ptr<Session> session;
  std::shared_ptr<Job> job;
  std::unique_ptr<TokenSampler> sampler;
  int32_t last_token = -1;  // the token to append next; -1 = prompt not yet prefilled
};

namespace {
double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

Scheduler::Scheduler(Engine& engine, uint32_t slots, size_t max_queue, Metrics& metrics)
    : engine_(engine), metrics_(metrics), max_queue_(max_queue) {
  if (slots == 0) fail("serve: --parallel 0, expected at least 1 slot");
  for (uint32_t i = 0; i < slots; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->session = engine_.new_session();
    max_context_ = i == 0 ? slot->session->max_context() : std::min(max_context_, slot->session->max_context());
    slots_.push_back(std::move(slot));
  }
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { shutdown(); }

void Scheduler::shutdown() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mu_);
  for (auto& job : queue_) job->finish(Finish::Cancelled, "the server is shutting down");
  queue_.clear();
  for (auto& slot : slots_)
    if (slot->job) {
      slot->job->finish(Finish::Cancelled, "the server is shutting down");
      slot->job.reset();
    }
  running_ = 0;
}

void Scheduler::submit(std::shared_ptr<Job> job) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) throw ApiError(503, "the server is shutting down", "server_error", "", "shutting_down");
    if (queue_.size() >= max_queue_)
      throw ApiError(503, str("the request queue is full (", max_queue_, " waiting); retry later"), "server_error",
                     "", "queue_full");
    job->arrived = Clock::now();
    queue_.push_back(std::move(job));
  }
  cv_.notify_all();
}

size_t Scheduler::queue_depth() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

size_t Scheduler::running() const {
  std::lock_guard lock(mu_);
  return running_;
}

void Scheduler::loop() {
  for (;;) {
    // Fill free slots from the queue (FIFO), skipping jobs cancelled while waiting.
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || running_ > 0 || !queue_.empty(); });
      if (stopping_) return;
      for (auto& slot : slots_) {
        if (slot->job) continue;
        while (!queue_.empty() && queue_.front()->cancelled()) {
          queue_.front()->finish(Finish::Cancelled);
          queue_.pop_front();
        }
        if (queue_.empty()) break;
        slot->job = std::move(queue_.front());
        queue_.pop_front();
        ++running_;
      }
    }
    // One step of every running slot. The engine is called without the lock held.
    for (auto& slot : slots_)
      if (slot->job) step_slot(*slot);
  }
}

void Scheduler::admit(Slot& slot, std::shared_ptr<Job> job) {
  job->started = Clock::now();
  const auto& s = job->input().sampling;
  const uint64_t seed = s.seed ? *s.seed : std::random_device{}();
  slot.sampler = std::make_unique<TokenSampler>(s, seed);
  slot.last_token = -1;
}

// Anything that throws while a job runs (the engine, the sampler, the tokenizer) ends
// that job with an error; the scheduler thread itself never dies.
void Scheduler::step_slot(Slot& slot) {
  Job& job = *slot.job;
  if (job.cancelled()) return release(slot, Finish::Cancelled);
  try {
    if (!slot.sampler) admit(slot, slot.job);
    const int32_t t = slot.last_token;
    std::span<const int32_t> in(&t, 1);
    if (t < 0) {
      slot.session->reset();
      in = job.input().prompt;
    }
    int32_t id = -1;
    std::optional<TokenLogprob> lp;
    if (job.input().top_logprobs >= 0) {  // log-probabilities need the whole row on the host
      const auto logits = slot.session->append(in);
      id = slot.sampler->sample(logits);
      lp = token_logprob(logits, id, job.input().top_logprobs);
    } else {  // the backend samples (CUDA: on the device, only the token comes back)
      id = slot.session->append_sample(in, slot.sampler->runtime_sampler());
    }
    if (job.generated() == 0) job.first_token = Clock::now();
    slot.last_token = id;

    const Tokenizer& tok = engine_.tokenizer();
    if (id == tok.eos() && !job.input().ignore_eos) {
      job.push_token(id, {}, std::move(lp));
      return release(slot, Finish::Stop);
    }
    const int32_t ids[1] = {id};
    const bool stopped = job.push_token(id, tok.decode(ids), std::move(lp));
    if (stopped) return release(slot, Finish::Stop);
    if (job.generated() >= job.input().max_tokens || slot.session->position() + 1 > slot.session->max_context())
      return release(slot, Finish::Length);
  } catch (const std::exception& e) {
    release(slot, Finish::Error, e.what());
  } catch (...) {
    release(slot, Finish::Error, "unknown exception");
  }
}

void Scheduler::release(Slot& slot, Finish f, const std::string& error) {
  Job& job = *slot.job;
  // The metrics first: finishing the job lets its reply go out, and a client that has its
  // reply must find the generation counted (it was not, now and then, on a loaded CI host).
  const auto done = Clock::now();
  const auto first = job.generated() > 0 ? job.first_token : done;
  metrics_.generation_done(job.input().prompt.size(), job.generated(), seconds(job.started - job.arrived),
                           seconds(first - job.arrived), seconds(done - first), seconds(done - job.arrived),
                           finish_name(f));
  job.finish(f, error);
  slot.job.reset();
  slot.sampler.reset();
  slot.last_token = -1;
  std::lock_guard lock(mu_);
  --running_;
}

}  // namespace fp::serve
