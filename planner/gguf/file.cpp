// gguf::File: maps a GGUF (every shard of a split one) read-only and answers queries.
//
// Parsing is parse_shard()'s job; this file owns the mappings, stitches shards into
// one model (shard 0's metadata, every shard's tensors) and turns lookups that fail
// into errors that name the file and list what was there instead.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iomanip>
#include <limits>
#include <map>

#include "ops/core/error.h"
#include "planner/gguf/gguf.h"
#include "planner/gguf/parse.h"

namespace fp::gguf {
namespace {

// A read-only view of one file: an mmap, or bytes owned in memory (from_bytes).
class Mapping {
 public:
  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (addr_) munmap(addr_, size_);
  }

  static std::unique_ptr<Mapping> map_file(const std::string& path) {
    auto m = std::make_unique<Mapping>();
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("cannot open ", path, ": ", std::strerror(errno));
    struct stat st {};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      fail("cannot read ", path, ": not a regular file");
    }
    m->size_ = size_t(st.st_size);
    if (m->size_ > 0) {
      void* p = mmap(nullptr, m->size_, PROT_READ, MAP_SHARED, fd, 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        fail("cannot map ", path, " (", m->size_, " bytes): ", std::strerror(err));
      }
      m->addr_ = p;
    }
    ::close(fd);  // the mapping keeps the file alive
    return m;
  }

  static std::unique_ptr<Mapping> own(std::vector<uint8_t> bytes) {
    auto m = std::make_unique<Mapping>();
    m->owned_ = std::move(bytes);
    m->size_ = m->owned_.size();
    return m;
  }

  std::span<const uint8_t> bytes() const {
    if (addr_) return {static_cast<const uint8_t*>(addr_), size_};
    return {owned_.data(), owned_.size()};
  }

 private:
  void* addr_ = nullptr;
  size_t size_ = 0;
  std::vector<uint8_t> owned_;
};

// "dir/NAME-00002-of-00005.gguf" -> {"dir/NAME", 2, 5}; nullopt when not a split name.
struct SplitName {
  std::string prefix;
  int index = 0;
  int count = 0;
};

std::optional<SplitName> parse_split_name(const std::string& path) {
  // Suffix "-NNNNN-of-NNNNN.gguf": 20 characters.
  constexpr size_t kSuffix = 20;
  if (path.size() <= kSuffix) return std::nullopt;
  const std::string_view tail = std::string_view(path).substr(path.size() - kSuffix);
  auto digits = [&](size_t at) {
    int v = 0;
    for (size_t k = at; k < at + 5; ++k) {
      if (tail[k] < '0' || tail[k] > '9') return -1;
      v = v * 10 + (tail[k] - '0');
    }
    return v;
  };
  if (tail[0] != '-' || tail.substr(6, 4) != "-of-" || tail.substr(15) != ".gguf") return std::nullopt;
  const int index = digits(1), count = digits(10);
  if (index < 1 || count < 1 || index > count) return std::nullopt;
  return SplitName{path.substr(0, path.size() - kSuffix), index, count};
}

std::string split_path(const SplitName& s, int index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "-%05d-of-%05d.gguf", index, s.count);
  return s.prefix + buf;
}

// Levenshtein distance, for "did you mean" lists (names are at most 64 bytes).
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

const Value* find_in(const std::vector<std::pair<std::string, Value>>& kv, std::string_view key) {
  for (const auto& [k, v] : kv)
    if (k == key) return &v;
  return nullptr;
}

bool is_unsigned(ValueType t) {
  return t == ValueType::U8 || t == ValueType::U16 || t == ValueType::U32 || t == ValueType::U64;
}
bool is_signed(ValueType t) {
  return t == ValueType::I8 || t == ValueType::I16 || t == ValueType::I32 || t == ValueType::I64;
}
bool is_float(ValueType t) { return t == ValueType::F32 || t == ValueType::F64; }

}  // namespace

struct File::Impl {
  std::string path;  // as given (errors name it)
  OpenOptions opts;
  std::vector<std::string> shard_paths;
  std::vector<std::unique_ptr<Mapping>> maps;
  std::vector<detail::Shard> shards;  // kv kept for shard 0 only
  std::vector<TensorInfo> tensors;
  std::map<std::string, size_t, std::less<>> by_name;

  [[noreturn]] void error_at(std::string_view key, const std::string& what) const {
    fail("metadata key \"", key, "\": ", what, " (", path, ")");
  }

  const Value& need(std::string_view key) const {
    const Value* v = find_in(shards[0].kv, key);
    if (!v) fail("metadata key \"", key, "\" not found (", path, ")");
    return *v;
  }

  void add_shard(std::unique_ptr<Mapping> m, const std::string& name) {
    detail::Shard s = detail::parse_shard(m->bytes(), name, opts);
    const uint32_t index = uint32_t(shards.size());
    // llama.cpp's gguf-split keys, when present, must agree with the file names.
    if (const Value* v = find_in(s.kv, kSplitNo)) {
      const bool ok = (is_unsigned(v->type) && v->u == index) || (is_signed(v->type) && v->i == int64_t(index));
      if (!ok)
        fail("metadata key \"", kSplitNo, "\" is ", is_unsigned(v->type) ? std::to_string(v->u) : std::to_string(v->i),
             ", expected ", index, " (0-based position of this shard) (", name, ")");
    }
    for (TensorInfo& t : s.tensors) {
      t.shard = index;
      auto [it, fresh] = by_name.emplace(t.name, tensors.size());
      if (!fresh)
        fail("duplicate tensor name \"", t.name, "\" in split shards ", tensors[it->second].shard + 1, " and ",
             index + 1, ", expected unique names (", name, ")");
      tensors.push_back(t);
    }
    if (index > 0) s.kv.clear();  // only shard 0's metadata describes the model
    shard_paths.push_back(name);
    maps.push_back(std::move(m));
    shards.push_back(std::move(s));
  }
};

// ---- opening ------------------------------------------------------------------------

File::File(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
File::File(File&&) noexcept = default;
File& File::operator=(File&&) noexcept = default;
File::~File() = default;

File File::from_bytes(std::vector<uint8_t> bytes, std::string name, OpenOptions opts) {
  auto impl = std::make_unique<Impl>();
  impl->path = std::move(name);
  impl->opts = opts;
  impl->add_shard(Mapping::own(std::move(bytes)), impl->path);
  File f(std::move(impl));
  f.check_split_keys();
  return f;
}

File File::open(const std::string& path, OpenOptions opts) {
  auto impl = std::make_unique<Impl>();
  impl->opts = opts;
  const auto split = parse_split_name(path);
  if (!split || split->count == 1) {
    impl->path = path;
    impl->add_shard(Mapping::map_file(path), path);
    File f(std::move(impl));
    f.check_split_keys();
    return f;
  }
  // A split GGUF is read as one model whichever shard was named: shards 1..N.
  impl->path = split_path(*split, 1);
  for (int k = 1; k <= split->count; ++k) {
    const std::string p = split_path(*split, k);
    impl->add_shard(Mapping::map_file(p), p);
  }
  File f(std::move(impl));
  f.check_split_keys();
  return f;
}

// llama.cpp's gguf-split keys, when present, must agree with the shards found: a lone
// shard opened under another name would otherwise silently miss most tensors.
void File::check_split_keys() const {
  const Impl& m = *impl_;
  const size_t n = m.shards.size();
  auto count = [&](const char* key) -> std::optional<uint64_t> {
    const Value* v = find(key);
    if (!v) return std::nullopt;
    if (is_unsigned(v->type)) return v->u;
    if (is_signed(v->type) && v->i >= 0) return uint64_t(v->i);
    fail("metadata key \"", key, "\": ", is_signed(v->type) ? str("value ", v->i) : str("type ", value_type_name(v->type)),
         ", expected a non-negative integer (", m.path, ")");
  };
  if (const auto c = count(kSplitCount); c && *c != n) {
    if (n == 1)
      fail("metadata key \"", kSplitCount, "\" is ", *c, ": this file is one shard of a split GGUF, expected it to be "
           "opened by a name ending in -0000k-of-", str(std::setw(5), std::setfill('0'), *c), ".gguf (", m.path, ")");
    fail("metadata key \"", kSplitCount, "\" is ", *c, ", expected ", n, " (the number of shard files named like ",
         m.path, ")");
  }
  if (const auto c = count(kSplitTensors); c && *c != m.tensors.size())
    fail("metadata key \"", kSplitTensors, "\" is ", *c, ", but the ", n, " shard(s) hold ", m.tensors.size(),
         " tensors (", m.path, ")");
}

// ---- accessors ----------------------------------------------------------------------

const std::string& File::path() const { return impl_->path; }
uint32_t File::version() const { return impl_->shards[0].version; }
uint64_t File::alignment() const { return impl_->shards[0].alignment; }
uint64_t File::data_offset() const { return impl_->shards[0].data_offset; }
uint64_t File::tensor_info_end() const { return impl_->shards[0].tensor_info_end; }
uint64_t File::file_size() const { return impl_->shards[0].file_size; }
size_t File::shard_count() const { return impl_->shards.size(); }
bool File::header_only() const { return impl_->shards[0].header_only; }

const std::vector<std::pair<std::string, Value>>& File::metadata() const { return impl_->shards[0].kv; }
const Value* File::find(std::string_view key) const { return find_in(impl_->shards[0].kv, key); }

uint64_t File::get_uint(std::string_view key) const {
  const Value& v = impl_->need(key);
  if (is_unsigned(v.type)) return v.u;
  if (is_signed(v.type) && v.i >= 0) return uint64_t(v.i);
  if (is_signed(v.type)) impl_->error_at(key, str("value ", v.i, " is negative, expected an unsigned integer"));
  impl_->error_at(key, str("type ", value_type_name(v.type), ", expected an integer"));
}

int64_t File::get_int(std::string_view key) const {
  const Value& v = impl_->need(key);
  if (is_signed(v.type)) return v.i;
  if (is_unsigned(v.type) && v.u <= uint64_t(std::numeric_limits<int64_t>::max())) return int64_t(v.u);
  if (is_unsigned(v.type)) impl_->error_at(key, str("value ", v.u, " exceeds INT64_MAX"));
  impl_->error_at(key, str("type ", value_type_name(v.type), ", expected an integer"));
}

double File::get_float(std::string_view key) const {
  const Value& v = impl_->need(key);
  if (is_float(v.type)) return v.f;
  if (is_unsigned(v.type)) return double(v.u);
  if (is_signed(v.type)) return double(v.i);
  impl_->error_at(key, str("type ", value_type_name(v.type), ", expected a number"));
}

bool File::get_bool(std::string_view key) const {
  const Value& v = impl_->need(key);
  if (v.type != ValueType::BOOL) impl_->error_at(key, str("type ", value_type_name(v.type), ", expected bool"));
  return v.u != 0;
}

const std::string& File::get_string(std::string_view key) const {
  const Value& v = impl_->need(key);
  if (v.type != ValueType::STRING) impl_->error_at(key, str("type ", value_type_name(v.type), ", expected string"));
  return v.s;
}

std::vector<int64_t> File::get_int_array(std::string_view key) const {
  const Value& v = impl_->need(key);
  if (v.type != ValueType::ARRAY || !(is_signed(v.item_type) || is_unsigned(v.item_type)))
    impl_->error_at(key, str("type ", value_type_name(v.type),
                             v.type == ValueType::ARRAY ? str(" of ", value_type_name(v.item_type)) : std::string(),
                             ", expected an array of integers"));
  if (is_signed(v.item_type)) return v.arr_i;
  std::vector<int64_t> out;
  out.reserve(v.arr_u.size());
  for (size_t k = 0; k < v.arr_u.size(); ++k) {
    if (v.arr_u[k] > uint64_t(std::numeric_limits<int64_t>::max()))
      impl_->error_at(key, str("element ", k, " is ", v.arr_u[k], ", exceeds INT64_MAX"));
    out.push_back(int64_t(v.arr_u[k]));
  }
  return out;
}

std::vector<double> File::get_float_array(std::string_view key) const {
  const Value& v = impl_->need(key);
  if (v.type != ValueType::ARRAY || !(is_float(v.item_type) || is_signed(v.item_type) || is_unsigned(v.item_type)))
    impl_->error_at(key, str("type ", value_type_name(v.type),
                             v.type == ValueType::ARRAY ? str(" of ", value_type_name(v.item_type)) : std::string(),
                             ", expected an array of numbers"));
  if (is_float(v.item_type)) return v.arr_f;
  if (is_signed(v.item_type)) return std::vector<double>(v.arr_i.begin(), v.arr_i.end());
  return std::vector<double>(v.arr_u.begin(), v.arr_u.end());
}

const std::vector<std::string>& File::get_string_array(std::string_view key) const {
  const Value& v = impl_->need(key);
  if (v.type != ValueType::ARRAY || v.item_type != ValueType::STRING)
    impl_->error_at(key, str("type ", value_type_name(v.type),
                             v.type == ValueType::ARRAY ? str(" of ", value_type_name(v.item_type)) : std::string(),
                             ", expected an array of strings"));
  return v.arr_s;
}

// ---- tensors ------------------------------------------------------------------------

const std::vector<TensorInfo>& File::tensors() const { return impl_->tensors; }

const TensorInfo* File::tensor(std::string_view name) const {
  auto it = impl_->by_name.find(name);
  return it == impl_->by_name.end() ? nullptr : &impl_->tensors[it->second];
}

std::vector<std::string> File::near_names(std::string_view name, size_t max) const {
  std::vector<std::pair<size_t, size_t>> scored;  // (distance, index)
  for (size_t i = 0; i < impl_->tensors.size(); ++i)
    scored.emplace_back(edit_distance(name, impl_->tensors[i].name), i);
  const size_t n = std::min(max, scored.size());
  std::partial_sort(scored.begin(), scored.begin() + n, scored.end());
  std::vector<std::string> out;
  for (size_t k = 0; k < n; ++k) out.push_back(impl_->tensors[scored[k].second].name);
  return out;
}

const TensorInfo& File::require_tensor(std::string_view name) const {
  if (const TensorInfo* t = tensor(name)) return *t;
  if (impl_->tensors.empty()) fail("tensor \"", name, "\" not found: the file has no tensors (", impl_->path, ")");
  std::string near;
  for (const std::string& n : near_names(name, 5)) near += (near.empty() ? "\"" : ", \"") + n + "\"";
  fail("tensor \"", name, "\" not found among ", impl_->tensors.size(), " tensors; nearest names: ", near, " (",
       impl_->path, ")");
}

std::span<const uint8_t> File::bytes(const TensorInfo& t) const {
  if (header_only())
    fail("tensor \"", t.name, "\": ", impl_->path, " is a header-only GGUF and holds no tensor data");
  if (t.shard >= impl_->maps.size()) fail("tensor \"", t.name, "\": shard ", t.shard, " does not exist (", impl_->path, ")");
  const std::span<const uint8_t> all = impl_->maps[t.shard]->bytes();
  if (t.file_offset > all.size() || t.n_bytes > all.size() - t.file_offset)
    fail("tensor \"", t.name, "\": bytes [", t.file_offset, ", +", t.n_bytes, ") lie outside ",
         impl_->shard_paths[t.shard], " (", all.size(), " bytes)");
  return all.subspan(t.file_offset, t.n_bytes);
}

}  // namespace fp::gguf
