// GGUF v3 reader and writer (GGUF.md). Plain C++, no CUDA.
//
// The reader mmaps the file (all shards of a split GGUF, "-00001-of-0000N.gguf"),
// checks every count, length, offset and product before use (GGUF.md §8) and hands
// out zero-copy views of tensor bytes. It refuses: big-endian files, versions other
// than 2/3, nested arrays, unknown or removed type ids, overlapping or misaligned
// tensors, and anything that would read outside the file. Every error names the
// file, the field, the value found and what was expected. Where the spec, ggml and
// gguf-py disagree (oracle/gguf/policy), parse.cpp's opening comment says what is chosen.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ops/quant/types.h"

namespace fp::gguf {

enum class ValueType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
// Lower-case names used by `inspect --json`: "uint8" ... "float64", "bool", "string", "array".
const char* value_type_name(ValueType t);

// One metadata value. Scalars live in the field of their kind; arrays in the vector of
// their item kind (bools in arr_u). f32 values are widened exactly into f64.
struct Value {
  ValueType type = ValueType::U8;
  ValueType item_type = ValueType::U8;  // arrays only
  uint64_t u = 0;                       // U8/U16/U32/U64, BOOL (0/1)
  int64_t i = 0;                        // I8/I16/I32/I64
  double f = 0;                         // F32/F64
  std::string s;                        // STRING
  std::vector<uint64_t> arr_u;
  std::vector<int64_t> arr_i;
  std::vector<double> arr_f;
  std::vector<std::string> arr_s;

  size_t array_size() const;

  static Value make_u32(uint32_t v);
  static Value make_i32(int32_t v);
  static Value make_u64(uint64_t v);
  static Value make_f32(float v);
  static Value make_bool(bool v);
  static Value make_string(std::string v);
  static Value make_array_i32(std::vector<int32_t> v);
  static Value make_array_f32(std::vector<float> v);
  static Value make_array_string(std::vector<std::string> v);
};

struct TensorInfo {
  std::string name;
  uint32_t n_dims = 0;
  std::array<int64_t, 4> ne{1, 1, 1, 1};  // ne[0] innermost; missing dims are 1
  DType type = DType::F32;
  uint64_t offset = 0;       // relative to its shard's data section, as stored
  uint64_t n_bytes = 0;
  uint32_t shard = 0;        // index of the split file holding it
  uint64_t file_offset = 0;  // absolute byte offset in that shard
  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

// Keys written by llama.cpp's gguf-split into every shard of a split GGUF.
inline constexpr const char* kSplitNo = "split.no";                  // u16, 0-based shard index
inline constexpr const char* kSplitCount = "split.count";            // u16, number of shards
inline constexpr const char* kSplitTensors = "split.tensors.count";  // i32, tensors in all shards

struct OpenOptions {
  // Accept a header-only GGUF (written by `flashplan synth --header-only`: it carries
  // flashplan.header_only = true and no tensor data). bytes() then throws.
  bool allow_header_only = false;
};

class File {
 public:
  static File open(const std::string& path, OpenOptions opts = {});
  // Parses a GGUF held in memory (tests, the fuzzer). `name` is what errors call it.
  // The File owns the bytes; split files are not followed.
  static File from_bytes(std::vector<uint8_t> bytes, std::string name, OpenOptions opts = {});
  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  ~File();

  const std::string& path() const;
  uint32_t version() const;
  uint64_t alignment() const;
  uint64_t data_offset() const;  // of shard 0
  uint64_t tensor_info_end() const;  // of shard 0: just past the last tensor info
  uint64_t file_size() const;    // of shard 0
  size_t shard_count() const;
  bool header_only() const;

  const std::vector<std::pair<std::string, Value>>& metadata() const;  // file order
  const Value* find(std::string_view key) const;

  // Typed getters: throw fp::Error naming the file and key when the key is missing or
  // the type does not fit (integers are range-checked, any int type accepted).
  uint64_t get_uint(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  double get_float(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  const std::string& get_string(std::string_view key) const;
  std::vector<int64_t> get_int_array(std::string_view key) const;
  std::vector<double> get_float_array(std::string_view key) const;
  const std::vector<std::string>& get_string_array(std::string_view key) const;

  const std::vector<TensorInfo>& tensors() const;  // file order (shard 0 first)
  const TensorInfo* tensor(std::string_view name) const;
  // Up to `max` tensor names closest to `name` (edit distance), for error messages.
  std::vector<std::string> near_names(std::string_view name, size_t max = 5) const;
  // Like tensor() but throws, listing a few near names when it is missing.
  const TensorInfo& require_tensor(std::string_view name) const;
  std::span<const uint8_t> bytes(const TensorInfo& t) const;  // zero-copy view

 private:
  struct Impl;
  explicit File(std::unique_ptr<Impl> impl);
  void check_split_keys() const;
  std::unique_ptr<Impl> impl_;
};

// Writes a GGUF v3 file in the layout gguf-py and ggml write: metadata in the order
// added, tensor data in the order added, each tensor padded to the alignment,
// trailing padding included. Tensor bytes are produced by a callback so that files of
// any size stream with bounded memory.
//
// write() reserves the whole file (posix_fallocate, so a full disk fails cleanly up
// front), writes the header, then hands fill() a window of a shared mapping of the
// output for each tensor: no copy of a tensor is ever held in anonymous memory, and
// dirty pages go back to the kernel as it writes them out. The file appears under
// its name only when complete (written as PATH.partial, then renamed).
//
// Thread safety: with WriteOptions::threads > 1, fill() is called concurrently from
// that many threads, each call for a different tensor and a disjoint byte range, in
// no particular order; the output bytes do not depend on the order. With threads ==
// 1 (the default) fill() is called in tensor order on the calling thread. A Writer
// itself is not safe to modify while write() runs.
struct WriteOptions {
  bool header_only = false;  // header and tensor table only (adds flashplan.header_only = true)
  unsigned threads = 1;      // concurrent fill() calls
};

class Writer {
 public:
  void set_alignment(uint32_t a);  // also written as general.alignment when != 32
  // Metadata in file order. Adding "general.alignment" (uint32) sets the alignment.
  // Throws on an empty or duplicate key, a nested array or a value out of its type's range.
  void add(std::string key, Value v);
  void add_tensor(std::string name, DType type, std::vector<int64_t> ne);
  const std::vector<TensorInfo>& tensors() const;  // offsets/sizes as they will be written
  uint32_t alignment() const { return alignment_; }
  uint64_t total_size(bool header_only = false) const;  // size of the file write() produces

  // fill(index, dst): write tensor `index`'s bytes (dst.size() == n_bytes) into dst.
  // Not called for zero-byte tensors or when header_only.
  using Fill = std::function<void(size_t index, std::span<uint8_t> dst)>;
  void write(const std::string& path, const Fill& fill, bool header_only = false) const;
  void write(const std::string& path, const Fill& fill, const WriteOptions& opts) const;

  // Header, metadata and tensor infos: the file's first bytes, up to (not including)
  // the zero padding before the data section.
  std::vector<uint8_t> header_bytes(bool header_only = false) const;

 private:
  void relayout();
  uint32_t alignment_ = 32;
  uint64_t kv_bytes_ = 0;    // serialised size of kv_
  uint64_t info_bytes_ = 0;  // serialised size of the tensor infos
  std::vector<std::pair<std::string, Value>> kv_;
  std::vector<TensorInfo> tensors_;
};

}  // namespace fp::gguf
