// Shared pieces of the op-family GPU suites (tests/gpu/ops_*_test.cpp): random data
// (never zeros), device weights, and the comparison every op test states its bound in:
// relative L2 over the whole output AND max |got - ref|, with NaN or infinity (on either
// side) failing.
#pragma once
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "ops/core/launch.h"
#include "ops/linear/linear.h"
#include "ops/norm/norm_cuda.h"
#include "tests/gpu/gpu_util.h"

namespace fp::test {

// Normal values scaled by `scale`, never exactly zero.
inline std::vector<float> randn(size_t n, std::mt19937_64& rng, float scale = 1.0f, float center = 0.0f) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) {
    float r = nd(rng);
    while (r == 0.0f) r = nd(rng);
    x = center + scale * r;
  }
  return v;
}

struct Bound {
  double rel = 1e-5;  // relative L2
  double abs = 1e-4;  // max |got - ref|
};

struct Diff {
  double rel = 0, max_abs = 0;
  bool finite = true;
};

inline Diff diff(const std::vector<float>& got, const std::vector<float>& ref) {
  Diff d;
  if (got.size() != ref.size()) {
    d.finite = false;
    return d;
  }
  double num = 0, den = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i]) || !std::isfinite(ref[i])) {
      d.finite = false;
      continue;
    }
    const double e = double(got[i]) - double(ref[i]);
    num += e * e;
    den += double(ref[i]) * double(ref[i]);
    d.max_abs = std::max(d.max_abs, std::fabs(e));
  }
  d.rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return d;
}

inline void check_close(const std::string& what, const std::vector<float>& got, const std::vector<float>& ref, Bound b) {
  const Diff d = diff(got, ref);
  MESSAGE(what, ": rel L2 ", d.rel, " (bound ", b.rel, "), max abs ", d.max_abs, " (bound ", b.abs, ")",
          std::string(d.finite ? "" : ", NOT FINITE"));
  CHECK(d.finite);
  CHECK(d.rel <= b.rel);
  CHECK(d.max_abs <= b.abs);
}

// A weight whose bytes live in a DevBuf (kept alive by the caller).
inline ref::Weight dev_weight(const DevBuf& buf, DType t, int64_t rows, int64_t cols, int64_t experts = 1,
                              const char* name = "test.weight") {
  ref::Weight w;
  w.type = t;
  w.data = static_cast<const uint8_t*>(buf.p);
  w.rows = rows;
  w.cols = cols;
  w.experts = experts;
  w.name = name;
  return w;
}

inline ref::Weight host_weight(const std::vector<uint8_t>& bytes, DType t, int64_t rows, int64_t cols,
                               int64_t experts = 1, const char* name = "test.weight") {
  ref::Weight w;
  w.type = t;
  w.data = bytes.data();
  w.rows = rows;
  w.cols = cols;
  w.experts = experts;
  w.name = name;
  return w;
}

inline std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// A device int64 holding a step's first position.
struct DevPos {
  DevBuf buf{sizeof(int64_t)};
  explicit DevPos(int64_t p) { set(p); }
  void set(int64_t p) { GPU_CHECK(cudaMemcpy(buf.p, &p, sizeof p, cudaMemcpyHostToDevice)); }
  const int64_t* ptr() const { return buf.as<int64_t>(); }
};

// Programmatic dependent launch in the op suites (ops/core/pdl.cuh): an op launched with
// Launch{stream, true} right after a kernel that writes its input must give the plain
// launch's outputs bit for bit. refill() poisons `dst` (NaN) and rewrites it from `src`
// with a kernel on the stream (cuda::add of src and zeros: x + 0 = x for the suites'
// never-zero data), launched plain; the op under test, launched next with launch(), may
// start while that kernel runs, and one that read its input before its wait would see
// NaN (or a mix). Everything runs on one non-blocking stream; the destructor drains it.
struct PdlRun {
  cudaStream_t s = nullptr;
  std::vector<std::unique_ptr<DevBuf>> zeros;  // alive until the stream has drained
  PdlRun() { GPU_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)); }
  ~PdlRun() {
    cudaStreamSynchronize(s);
    cudaStreamDestroy(s);
  }
  PdlRun(const PdlRun&) = delete;
  PdlRun& operator=(const PdlRun&) = delete;
  cuda::Launch launch() const { return cuda::Launch{s, true}; }
  void refill(DevBuf& dst, const DevBuf& src) {
    REQUIRE(dst.bytes == src.bytes);
    REQUIRE(dst.bytes % 4 == 0);
    zeros.push_back(std::make_unique<DevBuf>(src.bytes));
    GPU_CHECK(cudaDeviceSynchronize());  // every buffer's poisoning (legacy stream) is done
    GPU_CHECK(cudaMemsetAsync(zeros.back()->p, 0, src.bytes, s));
    GPU_CHECK(cudaMemsetAsync(dst.p, 0xff, dst.bytes, s));
    cuda::add(src.as<float>(), zeros.back()->as<float>(), dst.as<float>(), int64_t(src.bytes / 4), s);
  }
};

// Bit-for-bit equality of two outputs (NaN patterns included), named in the message.
template <typename T>
inline void check_same_bits(const std::string& what, const std::vector<T>& got, const std::vector<T>& want) {
  REQUIRE(got.size() == want.size());
  size_t first = got.size();
  for (size_t i = 0; i < got.size() && first == got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(T)) != 0) first = i;
  CHECK_MESSAGE(first == got.size(), what, ": first differing element ", first, " of ", got.size());
}

}  // namespace fp::test
