// Thread pool behind fp::parallel_for. Workers sleep on a condition variable between
// jobs; a job is a range split into at most thread_count() contiguous chunks.
#include "ops/core/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace fp {
namespace {

thread_local bool t_in_parallel = false;

class Pool {
 public:
  explicit Pool(int n) { resize(n); }
  ~Pool() { stop(); }

  int size() const { return int(workers_.size()) + 1; }

  void resize(int n) {
    stop();
    n = std::max(1, n);
    quit_ = false;
    // A new worker must neither replay the last finished job (fn_ is gone) nor miss
    // one published before it first takes the lock: it starts from this generation.
    const uint64_t start = generation_;
    for (int i = 0; i < n - 1; ++i) workers_.emplace_back([this, i, start] { loop(i + 1, start); });
  }

  void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    const int64_t max_chunks = std::max<int64_t>(1, n / std::max<int64_t>(1, grain));
    const int chunks = int(std::min<int64_t>(size(), max_chunks));
    if (chunks <= 1 || t_in_parallel) {
      fn(0, n);
      return;
    }
    std::unique_lock<std::mutex> job_lock(job_mutex_);  // one job at a time
    {
      std::lock_guard<std::mutex> lk(m_);
      fn_ = &fn; n_ = n; chunks_ = chunks; pending_ = chunks - 1; ++generation_;
    }
    cv_.notify_all();
    t_in_parallel = true;
    do_chunk(0);
    t_in_parallel = false;
    std::unique_lock<std::mutex> lk(m_);
    done_cv_.wait(lk, [this] { return pending_ == 0; });
    fn_ = nullptr;
  }

 private:
  void do_chunk(int c) {
    const int64_t b = n_ * c / chunks_, e = n_ * (c + 1) / chunks_;
    if (b < e) (*fn_)(b, e);
  }

  void loop(int id, uint64_t seen) {
    for (;;) {
      std::unique_lock<std::mutex> lk(m_);
      cv_.wait(lk, [&] { return quit_ || generation_ != seen; });
      if (quit_) return;
      seen = generation_;
      if (id >= chunks_) continue;
      lk.unlock();
      t_in_parallel = true;
      do_chunk(id);
      t_in_parallel = false;
      lk.lock();
      if (--pending_ == 0) done_cv_.notify_one();
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(m_);
      quit_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex m_, job_mutex_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int chunks_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool quit_ = false;
};

Pool& pool() {
  static Pool p(int(std::max(1u, std::thread::hardware_concurrency())));
  return p;
}

}  // namespace

int thread_count() { return pool().size(); }
void set_thread_count(int n) { pool().resize(n); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  pool().run(n, grain, fn);
}

}  // namespace fp
