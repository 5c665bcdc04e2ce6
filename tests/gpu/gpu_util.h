// Helpers for the GPU suites: device buffers that are poisoned (NaN / 0xff bytes) before a
// kernel runs, so unwritten outputs show; copies back to the host; relative L2 error that
// treats any NaN or infinity as a failure.
#pragma once
#include <cuda_runtime.h>
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace fp::test {

#define GPU_CHECK(call)                                                           \
  do {                                                                            \
    const cudaError_t e_ = (call);                                                \
    REQUIRE_MESSAGE(e_ == cudaSuccess, #call, ": ", cudaGetErrorString(e_));      \
  } while (0)

// An owning device allocation; poison() fills it with 0xff bytes (a NaN in f32 and f16).
struct DevBuf {
  void* p = nullptr;
  size_t bytes = 0;
  explicit DevBuf(size_t n) : bytes(n) {
    GPU_CHECK(cudaMalloc(&p, n ? n : 1));
    poison();
  }
  template <typename T>
  explicit DevBuf(const std::vector<T>& v) : DevBuf(v.size() * sizeof(T)) {
    GPU_CHECK(cudaMemcpy(p, v.data(), bytes, cudaMemcpyHostToDevice));
  }
  ~DevBuf() { cudaFree(p); }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
  void poison() { GPU_CHECK(cudaMemset(p, 0xff, bytes ? bytes : 1)); }
  template <typename T>
  T* as() const { return static_cast<T*>(p); }
  template <typename T>
  std::vector<T> get(size_t n) const {
    std::vector<T> v(n);
    GPU_CHECK(cudaDeviceSynchronize());
    GPU_CHECK(cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
};

// ||got - ref|| / ||ref||; +inf when any value is not finite or the sizes differ.
inline double rel_l2(const std::vector<float>& got, const std::vector<double>& ref) {
  if (got.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i]) || !std::isfinite(ref[i])) return std::numeric_limits<double>::infinity();
    num += (double(got[i]) - ref[i]) * (double(got[i]) - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

inline std::vector<double> to_double(const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); }

inline bool same_bits(float a, float b) {
  uint32_t x, y;
  std::memcpy(&x, &a, 4);
  std::memcpy(&y, &b, 4);
  return x == y;
}

}  // namespace fp::test
