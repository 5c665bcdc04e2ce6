// How a launcher starts its kernels: the stream, and whether the first kernel may start
// while the previous kernel in the stream is still running (programmatic dependent
// launch, PDL: a plan node's overlap_prev, compute capability 9.0+). A plan decides it per
// node; a launcher never decides it itself. CUDA-free header, so the op families' host
// entries (ops/*/*_cuda.h) and CPU-only code can name it.
//
// Results never depend on it: a kernel that can be launched this way waits for the
// previous kernel (dev::wait_prev_grid, ops/core/pdl.cuh) before it touches memory that
// kernel may write, and a kernel launched plain runs that wait as a no-op.
#pragma once

struct CUstream_st;

namespace fp::cuda {

using Stream = CUstream_st*;

// Implicitly made from a Stream (overlap off), so callers that only have a stream (tests,
// tools, plan-less code) pass it as before. Not fp::Launch (ops/registry: a kernel's grid).
struct Launch {
  Stream stream = nullptr;
  bool overlap_prev = false;
  Launch(Stream s = nullptr, bool overlap = false) : stream(s), overlap_prev(overlap) {}  // NOLINT: implicit on purpose
};

}  // namespace fp::cuda
