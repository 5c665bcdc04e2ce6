// gguf::Writer: lays out and writes GGUF v3 files byte for byte as gguf-py does
// (header, KVs in order, tensor infos in order, zero padding to the alignment, each
// tensor's bytes padded to the alignment, the last one included).
//
// Everything the writer accepts, the reader accepts: values are range-checked against
// their type, nested arrays and duplicate keys/names are refused, so a round trip is
// exact. f32 values travel widened in Value::f and are narrowed back exactly.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <thread>

#include "ops/core/error.h"
#include "planner/gguf/gguf.h"
#include "planner/gguf/parse.h"

namespace fp::gguf {
namespace {

uint64_t align_up(uint64_t x, uint64_t a) {
  uint64_t y;
  if (__builtin_add_overflow(x, a - 1, &y)) fail("GGUF size ", x, " padded to ", a, " overflows uint64");
  return y & ~(a - 1);
}

// ---- value checks -------------------------------------------------------------------

void check_scalar(const std::string& key, ValueType t, uint64_t u, int64_t i) {
  auto range = [&](bool ok, const char* what) {
    if (!ok) fail("metadata key \"", key, "\": ", value_type_name(t), " value ", what, " out of range");
  };
  switch (t) {
    case ValueType::U8: range(u <= 0xff, "u"); break;
    case ValueType::U16: range(u <= 0xffff, "u"); break;
    case ValueType::U32: range(u <= 0xffffffffu, "u"); break;
    case ValueType::BOOL: range(u <= 1, "u"); break;
    case ValueType::I8: range(i >= INT8_MIN && i <= INT8_MAX, "i"); break;
    case ValueType::I16: range(i >= INT16_MIN && i <= INT16_MAX, "i"); break;
    case ValueType::I32: range(i >= INT32_MIN && i <= INT32_MAX, "i"); break;
    default: break;
  }
}

void check_value(const std::string& key, const Value& v) {
  if (uint32_t(v.type) > uint32_t(ValueType::F64)) fail("metadata key \"", key, "\": unknown value type ", uint32_t(v.type));
  if (v.type != ValueType::ARRAY) {
    check_scalar(key, v.type, v.u, v.i);
    return;
  }
  if (v.item_type == ValueType::ARRAY) fail("metadata key \"", key, "\": nested arrays are not supported");
  if (uint32_t(v.item_type) > uint32_t(ValueType::F64))
    fail("metadata key \"", key, "\": unknown array element type ", uint32_t(v.item_type));
  for (uint64_t u : v.arr_u) check_scalar(key, v.item_type, u, 0);
  for (int64_t i : v.arr_i) check_scalar(key, v.item_type, 0, i);
}

// ---- serialisation ------------------------------------------------------------------

class Bytes {
 public:
  template <typename T>
  void put(T v) {
    const size_t at = b_.size();
    b_.resize(at + sizeof(T));
    std::memcpy(b_.data() + at, &v, sizeof(T));
  }
  void put_string(std::string_view s) {
    put<uint64_t>(s.size());
    b_.insert(b_.end(), s.begin(), s.end());
  }
  std::vector<uint8_t>& data() { return b_; }

 private:
  std::vector<uint8_t> b_;
};

void put_scalar(Bytes& b, ValueType t, uint64_t u, int64_t i, double f, std::string_view s) {
  switch (t) {
    case ValueType::U8: case ValueType::BOOL: b.put<uint8_t>(uint8_t(u)); break;
    case ValueType::I8: b.put<int8_t>(int8_t(i)); break;
    case ValueType::U16: b.put<uint16_t>(uint16_t(u)); break;
    case ValueType::I16: b.put<int16_t>(int16_t(i)); break;
    case ValueType::U32: b.put<uint32_t>(uint32_t(u)); break;
    case ValueType::I32: b.put<int32_t>(int32_t(i)); break;
    case ValueType::U64: b.put<uint64_t>(u); break;
    case ValueType::I64: b.put<int64_t>(i); break;
    case ValueType::F32: b.put<float>(float(f)); break;
    case ValueType::F64: b.put<double>(f); break;
    case ValueType::STRING: b.put_string(s); break;
    case ValueType::ARRAY: break;
  }
}

void put_value(Bytes& b, const Value& v) {
  b.put<uint32_t>(uint32_t(v.type));
  if (v.type != ValueType::ARRAY) {
    put_scalar(b, v.type, v.u, v.i, v.f, v.s);
    return;
  }
  b.put<uint32_t>(uint32_t(v.item_type));
  b.put<uint64_t>(v.array_size());
  switch (v.item_type) {
    case ValueType::STRING: for (const auto& s : v.arr_s) b.put_string(s); break;
    case ValueType::F32: case ValueType::F64: for (double f : v.arr_f) put_scalar(b, v.item_type, 0, 0, f, {}); break;
    case ValueType::I8: case ValueType::I16: case ValueType::I32: case ValueType::I64:
      for (int64_t i : v.arr_i) put_scalar(b, v.item_type, 0, i, 0, {});
      break;
    default: for (uint64_t u : v.arr_u) put_scalar(b, v.item_type, u, 0, 0, {}); break;
  }
}

// Serialised size of a value (its type tag included), matching put_value.
uint64_t value_bytes(const Value& v) {
  uint64_t n = 4;
  auto scalar = [](ValueType t) -> uint64_t {
    switch (t) {
      case ValueType::U8: case ValueType::I8: case ValueType::BOOL: return 1;
      case ValueType::U16: case ValueType::I16: return 2;
      case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
      default: return 8;
    }
  };
  if (v.type == ValueType::STRING) return n + 8 + v.s.size();
  if (v.type != ValueType::ARRAY) return n + scalar(v.type);
  n += 4 + 8;
  if (v.item_type != ValueType::STRING) return n + v.array_size() * scalar(v.item_type);
  for (const auto& s : v.arr_s) n += 8 + s.size();
  return n;
}

// ---- file output --------------------------------------------------------------------

void pwrite_all(int fd, const uint8_t* p, size_t n, uint64_t at, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, n, off_t(at));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) fail("cannot write ", path, " at byte ", at, ": ", std::strerror(errno));
    p += w;
    n -= size_t(w);
    at += uint64_t(w);
  }
}

// Maps [at, at + n) of the output writable, lets fill() write it, unmaps.
void fill_window(int fd, uint64_t at, uint64_t n, size_t index, const Writer::Fill& fill, const std::string& path) {
  static const uint64_t page = uint64_t(sysconf(_SC_PAGESIZE));
  const uint64_t start = at & ~(page - 1);
  const uint64_t len = n + (at - start);
  void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(start));
  if (p == MAP_FAILED) fail("cannot map ", len, " bytes of ", path, " at ", start, ": ", std::strerror(errno));
  struct Unmap {
    void* p;
    uint64_t len;
    ~Unmap() { munmap(p, len); }
  } unmap{p, len};
  fill(index, std::span<uint8_t>(static_cast<uint8_t*>(p) + (at - start), n));
}

}  // namespace

// ---- layout -------------------------------------------------------------------------

void Writer::set_alignment(uint32_t a) {
  if (a == 0 || (a & (a - 1)) != 0) fail("GGUF alignment ", a, " is not a power of two");
  alignment_ = a;
  for (auto& [k, v] : kv_)
    if (k == "general.alignment") v = Value::make_u32(a);  // same size: kv_bytes_ holds
  bool present = false;
  for (const auto& kv : kv_) present |= kv.first == "general.alignment";
  if (!present && a != detail::kDefaultAlignment) {
    kv_.emplace_back("general.alignment", Value::make_u32(a));
    kv_bytes_ += 8 + kv_.back().first.size() + value_bytes(kv_.back().second);
  }
  relayout();
}

void Writer::add(std::string key, Value v) {
  if (key.empty()) fail("metadata key is empty");
  for (const auto& kv : kv_)
    if (kv.first == key) fail("duplicate metadata key \"", key, "\"");
  check_value(key, v);
  if (key == detail::kHeaderOnlyKey && v.type != ValueType::BOOL)
    fail(detail::kHeaderOnlyKey, " has type ", value_type_name(v.type), ", expected bool");
  if (key == "general.alignment") {
    if (v.type != ValueType::U32) fail("general.alignment has type ", value_type_name(v.type), ", expected uint32");
    if (v.u == 0 || (v.u & (v.u - 1)) != 0) fail("general.alignment ", v.u, " is not a power of two");
    alignment_ = uint32_t(v.u);
  }
  kv_bytes_ += 8 + key.size() + value_bytes(v);
  kv_.emplace_back(std::move(key), std::move(v));
  relayout();
}

void Writer::add_tensor(std::string name, DType type, std::vector<int64_t> ne) {
  if (name.size() > detail::kMaxTensorName)
    fail("tensor name \"", name, "\": length ", name.size(), ", expected at most ", detail::kMaxTensorName, " bytes");
  for (const auto& t : tensors_)
    if (t.name == name) fail("duplicate tensor name \"", name, "\"");
  if (ne.size() > detail::kMaxDims) fail("tensor \"", name, "\": ", ne.size(), " dimensions, expected at most 4");
  TensorInfo t;
  t.name = std::move(name);
  t.type = type;
  t.n_dims = uint32_t(ne.size());
  int64_t n = 1;
  for (size_t d = 0; d < ne.size(); ++d) {
    if (ne[d] < 0) fail("tensor \"", t.name, "\": dimension ", d, " is ", ne[d], ", expected >= 0");
    t.ne[d] = ne[d];
    if (__builtin_mul_overflow(n, ne[d], &n)) fail("tensor \"", t.name, "\": element count overflows int64");
  }
  const TypeTraits& tr = traits(type);
  if (t.ne[0] % tr.block != 0)
    fail("tensor \"", t.name, "\": ne0 ", t.ne[0], " is not a multiple of the ", tr.name, " block size ", tr.block);
  if (__builtin_mul_overflow(uint64_t(n / tr.block), uint64_t(tr.bytes), &t.n_bytes))
    fail("tensor \"", t.name, "\": byte size overflows uint64");
  info_bytes_ += 8 + t.name.size() + 4 + 8 * uint64_t(t.n_dims) + 4 + 8;
  tensors_.push_back(std::move(t));
  relayout();
}

// Offsets follow gguf-py: each tensor starts where the previous one's padded bytes end.
void Writer::relayout() {
  const uint64_t data_offset = align_up(24 + kv_bytes_ + info_bytes_, alignment_);
  uint64_t at = 0;
  for (TensorInfo& t : tensors_) {
    t.offset = at;
    t.file_offset = data_offset + at;
    if (__builtin_add_overflow(at, align_up(t.n_bytes, alignment_), &at))
      fail("tensor \"", t.name, "\": file size overflows uint64");
  }
}

const std::vector<TensorInfo>& Writer::tensors() const { return tensors_; }

std::vector<uint8_t> Writer::header_bytes(bool header_only) const {
  bool add_flag = header_only;
  for (const auto& kv : kv_) add_flag &= kv.first != detail::kHeaderOnlyKey;
  Bytes b;
  b.put<uint32_t>(0x46554747);  // "GGUF"
  b.put<uint32_t>(3);
  b.put<uint64_t>(tensors_.size());
  b.put<uint64_t>(kv_.size() + (add_flag ? 1 : 0));
  for (const auto& [k, v] : kv_) {
    b.put_string(k);
    if (header_only && k == detail::kHeaderOnlyKey) put_value(b, Value::make_bool(true));
    else put_value(b, v);
  }
  if (add_flag) {
    b.put_string(detail::kHeaderOnlyKey);
    put_value(b, Value::make_bool(true));
  }
  for (const TensorInfo& t : tensors_) {
    b.put_string(t.name);
    b.put<uint32_t>(t.n_dims);
    for (uint32_t d = 0; d < t.n_dims; ++d) b.put<uint64_t>(uint64_t(t.ne[d]));
    b.put<uint32_t>(uint32_t(t.type));
    b.put<uint64_t>(t.offset);
  }
  // The zero padding up to the data section is not materialised: write() gets it
  // from the reserved (zero) file, and an alignment of 2^31 must not cost 2 GiB here.
  return std::move(b.data());
}

uint64_t Writer::total_size(bool header_only) const {
  bool add_flag = header_only;
  for (const auto& kv : kv_) add_flag &= kv.first != detail::kHeaderOnlyKey;
  const uint64_t flag_bytes = add_flag ? 8 + std::strlen(detail::kHeaderOnlyKey) + 4 + 1 : 0;
  const uint64_t head = align_up(24 + kv_bytes_ + info_bytes_ + flag_bytes, alignment_);
  if (header_only || tensors_.empty()) return head;
  const TensorInfo& last = tensors_.back();
  return head + last.offset + align_up(last.n_bytes, alignment_);
}

// ---- writing ------------------------------------------------------------------------

void Writer::write(const std::string& path, const Fill& fill, bool header_only) const {
  WriteOptions o;
  o.header_only = header_only;
  write(path, fill, o);
}

void Writer::write(const std::string& path, const Fill& fill, const WriteOptions& opts) const {
  const std::vector<uint8_t> head = header_bytes(opts.header_only);
  const uint64_t total = total_size(opts.header_only);
  if (head.size() > total) fail("internal: GGUF header of ", head.size(), " bytes exceeds the file size ", total);
  const uint64_t data_offset = align_up(head.size(), alignment_);
  const std::string tmp = path + ".partial";

  int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create ", tmp, ": ", std::strerror(errno));
  try {
    // Reserve every byte now: a full disk is an error here, not a SIGBUS in fill().
    if (total > 0) {
      const int err = posix_fallocate(fd, 0, off_t(total));
      if (err != 0) fail("cannot reserve ", total, " bytes for ", tmp, ": ", std::strerror(err));
    }
    pwrite_all(fd, head.data(), head.size(), 0, tmp);
    if (!opts.header_only) {
      std::atomic<size_t> next{0};
      std::atomic<bool> stop{false};
      std::exception_ptr first_error;
      std::mutex error_mutex;
      auto worker = [&] {
        for (size_t i; !stop && (i = next++) < tensors_.size();) {
          const TensorInfo& t = tensors_[i];
          if (t.n_bytes == 0) continue;
          try {
            fill_window(fd, data_offset + t.offset, t.n_bytes, i, fill, tmp);
          } catch (...) {
            std::lock_guard<std::mutex> lock(error_mutex);
            if (!first_error) first_error = std::current_exception();
            stop = true;
          }
        }
      };
      const unsigned n_threads = std::max(1u, std::min<unsigned>(opts.threads, unsigned(tensors_.size())));
      if (n_threads == 1) {
        worker();
      } else {
        std::vector<std::thread> pool;
        for (unsigned k = 0; k < n_threads; ++k) pool.emplace_back(worker);
        for (auto& th : pool) th.join();
      }
      if (first_error) std::rethrow_exception(first_error);
    }
    // Surface write-back errors of the mapped pages before calling the file complete.
    if (fdatasync(fd) != 0) fail("cannot flush ", tmp, ": ", std::strerror(errno));
    const int closed = ::close(fd);
    fd = -1;
    if (closed != 0) fail("cannot close ", tmp, ": ", std::strerror(errno));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("cannot rename ", tmp, " to ", path, ": ", std::strerror(err));
  }
}

}  // namespace fp::gguf
