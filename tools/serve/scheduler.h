// The scheduler: one thread that owns every engine call. HTTP threads submit Jobs to
// a FIFO queue; the scheduler binds each to a free slot (a slot owns one engine
// Session, reused across jobs), prefills it, then steps all running slots one token
// each, round-robin, so long and short requests interleave. A job whose client went
// away is dropped before its next step, freeing its slot.
//
// Why one thread: engine sessions are not promised to be thread-safe, and the CPU
// engine already uses every core inside one step. Batching several sequences into
// one step later replaces `step_slot` over the running slots with one batched call;
// nothing above this file changes.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/engine.h"
#include "tools/serve/job.h"
#include "tools/serve/metrics.h"

namespace fp::serve {

class Scheduler {
 public:
  // Opens `slots` sessions on `engine` up front (so memory is claimed at start-up,
  // not on the first request) and starts the scheduler thread.
  Scheduler(Engine& engine, uint32_t slots, size_t max_queue, Metrics& metrics);
  ~Scheduler();  // shutdown()

  // Stops the thread; queued and running jobs finish as cancelled, later submits get
  // a 503. Idempotent.
  void shutdown();

  // Queues a job. Throws ApiError(503) when the queue is full.
  void submit(std::shared_ptr<Job> job);

  size_t queue_depth() const;
  size_t running() const;
  uint32_t slots() const { return uint32_t(slots_.size()); }
  uint64_t max_context() const { return max_context_; }

 private:
  struct Slot;
  void loop();
  void admit(Slot& slot, std::shared_ptr<Job> job);
  void step_slot(Slot& slot);
  void release(Slot& slot, Finish f, const std::string& error = {});

  Engine& engine_;
  Metrics& metrics_;
  const size_t max_queue_;
  uint64_t max_context_ = 0;
  std::vector<std::unique_ptr<Slot>> slots_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  size_t running_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace fp::serve
