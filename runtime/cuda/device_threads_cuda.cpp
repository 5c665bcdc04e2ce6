// DeviceThreads (device_threads.h).
#include "runtime/cuda/device_threads.h"

#include <cuda_runtime.h>

#include "ops/core/error.h"

namespace fp::cuda {

DeviceThreads::DeviceThreads(const std::vector<int>& devices) : errors_(devices.size()) {
  for (size_t i = 0; i < devices.size(); ++i) threads_.emplace_back([this, i, d = devices[i]] { loop(int(i), d); });
}

DeviceThreads::~DeviceThreads() {
  {
    std::lock_guard<std::mutex> l(m_);
    stop_ = true;
  }
  start_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void DeviceThreads::run(const std::function<void(int)>& fn) {
  std::unique_lock<std::mutex> l(m_);
  fn_ = &fn;
  pending_ = size();
  for (auto& e : errors_) e = nullptr;
  ++generation_;
  start_.notify_all();
  done_.wait(l, [&] { return pending_ == 0; });
  fn_ = nullptr;
  for (auto& e : errors_)
    if (e) std::rethrow_exception(e);
}

void DeviceThreads::loop(int i, int device) {
  std::exception_ptr setup;
  if (cudaSetDevice(device) != cudaSuccess) {
    cudaGetLastError();
    setup = std::make_exception_ptr(Error(str("device thread ", i, ": cannot use CUDA device ", device)));
  }
  uint64_t seen = 0;
  std::unique_lock<std::mutex> l(m_);
  for (;;) {
    start_.wait(l, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    const std::function<void(int)>* fn = fn_;
    l.unlock();
    std::exception_ptr err = setup;
    if (!err) {
      try {
        (*fn)(i);
      } catch (...) {
        err = std::current_exception();
      }
    }
    l.lock();
    errors_[size_t(i)] = err;
    if (--pending_ == 0) done_.notify_all();
  }
}

}  // namespace fp::cuda
