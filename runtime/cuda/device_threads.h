// One host thread per GPU of a multi-GPU session (runtime/cuda/MULTI_GPU.md): each
// thread makes its device current once and runs that device's executor. A step's NCCL
// collectives need every rank's call issued before any can finish, so the ranks' steps
// must run side by side, not one after another from one thread.
// run(fn) hands fn(i) to thread i for every i and returns when all have returned,
// rethrowing the exception of the lowest-numbered thread that threw. Not reentrant.
// CUDA-free header.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace fp::cuda {

class DeviceThreads {
 public:
  explicit DeviceThreads(const std::vector<int>& devices);  // thread i on CUDA device devices[i]
  ~DeviceThreads();
  DeviceThreads(const DeviceThreads&) = delete;
  DeviceThreads& operator=(const DeviceThreads&) = delete;

  int size() const { return int(threads_.size()); }
  void run(const std::function<void(int)>& fn);

 private:
  void loop(int i, int device);

  std::mutex m_;
  std::condition_variable start_, done_;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  const std::function<void(int)>* fn_ = nullptr;
  std::vector<std::exception_ptr> errors_;
  std::vector<std::thread> threads_;
};

}  // namespace fp::cuda
