// CPU matvec throughput per weight type (ops/quant/dot.h), 1 thread and all threads.
// Not part of the build; from the repo root, after building fp_ops in build-X:
//   g++ -O2 -std=c++20 -I. bench/quant_matvec.cpp build-X/ops/libfp_ops.a -lpthread -o qmv && ./qmv
// Prints type, threads, ms per 4096x4096 matvec, weight GB/s, and whether AVX2 is used.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "ops/core/half.h"
#include "ops/core/parallel.h"
#include "ops/quant/dot.h"
#include "ops/quant/lanes.h"

using namespace fp;

int main() {
  const int64_t rows = 4096, cols = 4096;
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<float> x(cols), y(rows);
  for (auto& v : x) v = float(byte(rng) - 128) / 64.0f;
  const int all = int(std::max(1u, std::thread::hardware_concurrency()));
  std::printf("avx2 %d, %d hardware threads\n", int(simd::avx2_active()), all);
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q2_K,
                  DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::IQ2_XXS, DType::IQ2_XS, DType::IQ3_XXS}) {
    std::vector<uint8_t> w(size_t(row_bytes(t, rows * cols)));
    for (auto& b : w) b = uint8_t(byte(rng));
    if (t == DType::F32)  // finite floats
      for (size_t i = 0; i < w.size(); i += 4) { const float v = float(byte(rng)) / 256; std::memcpy(&w[i], &v, 4); }
    for (int threads : {1, all}) {
      set_thread_count(threads);
      matvec(t, w.data(), rows, cols, x.data(), y.data());
      const int reps = threads == 1 ? 5 : 20;
      const auto t0 = std::chrono::steady_clock::now();
      for (int r = 0; r < reps; ++r) matvec(t, w.data(), rows, cols, x.data(), y.data());
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
      std::printf("%-8s threads %3d  %8.3f ms  %7.2f GB/s  %6.2f Gelem/s\n", dtype_name(t), threads,
                  s * 1e3, double(w.size()) / s / 1e9, double(rows * cols) / s / 1e9);
    }
  }
}
