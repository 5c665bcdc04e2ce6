// The file-reading engine behind load_weights(): byte ranges of GGUF shards -> device or
// pinned host destinations, through pinned staging buffers with several reads and copies
// in flight. Internal to runtime/cuda (device_weights.h is the public face).
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "runtime/cuda/device_weights.h"

namespace fp::cuda {

struct ReadJob {
  uint32_t shard = 0;
  uint64_t offset = 0;              // absolute offset in the shard file
  uint64_t bytes = 0;
  void* dst = nullptr;              // device pointer, or host pointer when on_host
  bool on_host = false;
  int device = 0;                   // device whose staging buffers and streams carry it
  std::span<const uint8_t> mapped;  // the same bytes in the reader's mmap (fallback source)
};

// Paths of a file's shards, in shard order ("-00001-of-0000N.gguf" naming), or an empty
// list when they cannot be derived (the loader then copies from the mappings).
std::vector<std::string> shard_paths(const gguf::File& f);

// Reads every job; returns whether all reads used O_DIRECT. Reports progress through
// opts.progress (total = sum of job bytes).
bool read_jobs(const std::vector<std::string>& shards, std::vector<ReadJob> jobs, const LoadOptions& opts,
               int& readers_used);

}  // namespace fp::cuda
