// Programmatic dependent launch (PDL) for the op families' CUDA kernels: the one way a
// kernel waits for, and releases, its neighbours in the stream, and the one host helper
// that launches a kernel plain or with PDL (ops/core/launch.h Launch::overlap_prev).
//
// The contract every kernel launched through launch_kernel keeps: it calls
// dev::wait_prev_grid() before it reads anything an earlier kernel wrote or writes
// anything an earlier kernel reads (the op kernels do it as their first statement; the
// matvecs fetch weights first, which no kernel writes). wait_prev_grid returns once the
// previous kernel has completed and its writes are visible; that kernel waited for its
// own predecessor before completing, so the order holds transitively. allow_next_grid()
// lets the next PDL-launched kernel become resident early; it only waits, so where it
// stands changes timing, never results. Both are no-ops in a kernel launched plain
// (griddepcontrol, PTX ISA 7.8, sm_90+).
#pragma once
#include <cuda_runtime.h>

#include <utility>

#include "ops/core/error.h"
#include "ops/core/launch.h"

namespace fp::cuda {

namespace dev {

__device__ __forceinline__ void wait_prev_grid() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void allow_next_grid() { asm volatile("griddepcontrol.launch_dependents;" :::); }

}  // namespace dev

// Launches kernel<<<grid, block, smem, l.stream>>>(args...), with programmatic stream
// serialization when l.overlap_prev, and checks the launch: an error names `what`.
template <typename... KArgs, typename... Args>
void launch_kernel(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, const Launch& l, const char* what,
                   Args&&... args) {
  cudaError_t e = cudaSuccess;
  if (!l.overlap_prev) {
    kernel<<<grid, block, smem, l.stream>>>(std::forward<Args>(args)...);
    e = cudaGetLastError();
  } else {
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = l.stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    e = cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
    const cudaError_t last = cudaGetLastError();  // read (and clear) what the launch recorded
    if (e == cudaSuccess) e = last;
  }
  if (e != cudaSuccess)
    fail("CUDA error in ", what, l.overlap_prev ? " (programmatic dependent launch)" : "", ": ", cudaGetErrorString(e));
}

}  // namespace fp::cuda
