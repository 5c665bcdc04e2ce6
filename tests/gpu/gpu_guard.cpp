// The GPU suite needs a CUDA device: without one the binary says so and exits 77, which
// CTest reports as "not run" (never as passed). Runs before doctest's main.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

namespace {

const bool kHaveDevice = [] {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    std::printf("not run: no CUDA device\n");
    std::fflush(stdout);
    std::_Exit(77);
  }
  return true;
}();

}  // namespace
