// A fixed pool of worker threads and parallel_for over index ranges.
//
// Determinism: parallel_for splits [0, n) into contiguous ranges and each index is
// handled by exactly one thread, with no cross-thread reductions, so callers that
// write output i only from index i get the same bits for any thread count.
#pragma once
#include <cstdint>
#include <functional>

namespace fp {

// Number of worker threads used by parallel_for (default: hardware concurrency).
int thread_count();
void set_thread_count(int n);

// Calls fn(begin, end) on disjoint ranges covering [0, n). `grain` is the smallest
// range worth giving one thread. Blocks until all ranges are done. Nested calls
// run serially on the calling thread.
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace fp
