// Internal to planner/gguf: parse one GGUF file (one shard) from its bytes.
//
// parse_shard() is the hardened core of the reader (GGUF.md §8). It only reads the
// header, metadata and tensor-info sections and validates every tensor's place in the
// data section; it never touches tensor bytes, so an 81 GiB mmap costs a few pages.
// It allocates only in proportion to bytes actually present in the file.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "planner/gguf/gguf.h"

namespace fp::gguf::detail {

// Limits that match ggml (GGUF_MAX_STRING_LENGTH, GGUF_MAX_ARRAY_ELEMENTS) and the spec
// (tensor names of at most 64 bytes; ggml allows 63, policy/tensor_name_64.gguf).
inline constexpr uint64_t kMaxStringBytes = uint64_t(1) << 30;
inline constexpr uint64_t kMaxArrayElements = uint64_t(1) << 30;
inline constexpr uint64_t kMaxTensorName = 64;
inline constexpr uint32_t kMaxDims = 4;
inline constexpr uint64_t kDefaultAlignment = 32;
inline constexpr const char* kHeaderOnlyKey = "flashplan.header_only";

struct Shard {
  uint32_t version = 0;
  uint64_t alignment = kDefaultAlignment;
  uint64_t tensor_info_end = 0;  // absolute offset just past the last tensor info
  uint64_t data_offset = 0;      // absolute start of the data section
  uint64_t file_size = 0;
  bool header_only = false;
  std::vector<std::pair<std::string, Value>> kv;
  std::vector<TensorInfo> tensors;  // shard index 0; the caller sets it
};

// `name` is what errors call the file (its path). Throws fp::Error.
Shard parse_shard(std::span<const uint8_t> bytes, const std::string& name, const OpenOptions& opts);

}  // namespace fp::gguf::detail
