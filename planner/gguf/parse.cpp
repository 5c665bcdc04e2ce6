// The hardened GGUF header parser (GGUF.md §8, in its reading order).
//
// Every number that comes from the file is treated as hostile: counts and lengths are
// compared with the bytes left (`n > remaining / size`, never `n * size > remaining`),
// products use checked multiplication, and nothing is reserved from a count before
// the bytes it implies are known to exist. Errors name the record (KV index and key,
// or tensor index and name), the value found and what was expected, and end with the
// file name.
//
// Policy where the spec, ggml and gguf-py disagree (oracle/gguf/policy/):
//   - tensor order, gaps between tensors and missing trailing padding are accepted:
//     the spec only asks for aligned, in-bounds, non-overlapping tensors;
//   - tensor names of 64 bytes are accepted (spec), 65 rejected (ggml allows 63);
//   - a bool byte other than 0 or 1 is rejected (spec; ggml and gguf-py read "true");
//   - general.alignment must be a non-zero power of two; 4 is accepted like ggml and
//     gguf-py do (the spec's "multiple of 8" is not enforced);
//   - zero-element tensors are accepted and take no bytes;
//   - nested arrays are rejected (ggml rejects them; nothing in DS4 uses them).
#include <algorithm>
#include <bit>
#include <cstring>
#include <iomanip>
#include <limits>
#include <map>

#include "ops/core/error.h"
#include "planner/gguf/parse.h"

namespace fp::gguf::detail {
namespace {

static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes a little-endian host");

constexpr uint64_t kHeaderBytes = 24;
constexpr uint64_t kMinKvBytes = 14;          // key length 8 + 1 key byte + type 4 + 1 value byte
constexpr uint64_t kMinTensorInfoBytes = 24;  // name length 8 + n_dims 4 + type 4 + offset 8

// ggml type ids that once existed and have no block size any more (GGUF.md §9).
const char* removed_type_name(uint32_t id) {
  switch (id) {
    case 4: return "Q4_2";
    case 5: return "Q4_3";
    case 31: return "Q4_0_4_4";
    case 32: return "Q4_0_4_8";
    case 33: return "Q4_0_8_8";
    case 36: return "IQ4_NL_4_4";
    case 37: return "IQ4_NL_4_8";
    case 38: return "IQ4_NL_8_8";
    default: return nullptr;
  }
}

// Bytes of one element of a fixed-size value type; 0 for strings and arrays.
uint64_t fixed_size(ValueType t) {
  switch (t) {
    case ValueType::U8: case ValueType::I8: case ValueType::BOOL: return 1;
    case ValueType::U16: case ValueType::I16: return 2;
    case ValueType::U32: case ValueType::I32: case ValueType::F32: return 4;
    case ValueType::U64: case ValueType::I64: case ValueType::F64: return 8;
    default: return 0;
  }
}

std::string shape_str(const std::array<int64_t, 4>& ne, uint32_t n_dims) {
  std::string s;
  for (uint32_t d = 0; d < n_dims; ++d) s += (d ? " x " : "") + std::to_string(ne[d]);
  return s.empty() ? "1" : s;
}

// A bounds-checked cursor over the file's bytes. `where` is a callable that names the
// record being read; it only runs when an error is reported.
class Cursor {
 public:
  Cursor(std::span<const uint8_t> b, const std::string& file) : b_(b), file_(file) {}

  uint64_t pos() const { return pos_; }
  uint64_t size() const { return b_.size(); }
  uint64_t remaining() const { return b_.size() - pos_; }

  template <typename... Args>
  [[noreturn]] void error(Args&&... args) const {
    fail(std::forward<Args>(args)..., " (", file_, ")");
  }

  template <typename T, typename Where>
  T scalar(const char* field, const Where& where) {
    if (sizeof(T) > remaining())
      error(where(), ": ", field, " (", sizeof(T), " bytes at offset ", pos_, ") runs past the end of the file (",
            size(), " bytes), expected a complete record (truncated file)");
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  template <typename Where>
  std::string_view string(const char* field, const Where& where, uint64_t max_len = kMaxStringBytes,
                         const char* note = "") {
    const uint64_t at = pos_;
    const uint64_t len = scalar<uint64_t>(field, where);
    if (len > remaining())
      error(where(), ": ", field, " length ", len, " (length field at offset ", at, ") exceeds the ", remaining(),
            " bytes left in the file, expected at most that (truncated or corrupt)");
    if (len > max_len) error(where(), ": ", field, " length ", len, " at offset ", at, " exceeds the maximum of ", max_len, " bytes", note);
    std::string_view s(reinterpret_cast<const char*>(b_.data() + pos_), len);
    pos_ += len;
    return s;
  }

 private:
  std::span<const uint8_t> b_;
  const std::string& file_;
  uint64_t pos_ = 0;
};

// ---- metadata values --------------------------------------------------------------

template <typename Where>
uint64_t read_bool(Cursor& c, const Where& where) {
  const uint64_t at = c.pos();
  const uint8_t v = c.scalar<uint8_t>("bool", where);
  if (v > 1) c.error(where(), ": bool byte ", unsigned(v), " at offset ", at, ", expected 0 or 1");
  return v;
}

// Reads one value of scalar type `t` into the matching field of `out` (scalar) or
// appends it to the matching array vector (array == true).
template <typename Where>
void read_scalar(Cursor& c, ValueType t, Value& out, bool array, const Where& where) {
  auto put_u = [&](uint64_t v) { array ? out.arr_u.push_back(v) : void(out.u = v); };
  auto put_i = [&](int64_t v) { array ? out.arr_i.push_back(v) : void(out.i = v); };
  auto put_f = [&](double v) { array ? out.arr_f.push_back(v) : void(out.f = v); };
  switch (t) {
    case ValueType::U8: put_u(c.scalar<uint8_t>("uint8 value", where)); break;
    case ValueType::I8: put_i(c.scalar<int8_t>("int8 value", where)); break;
    case ValueType::U16: put_u(c.scalar<uint16_t>("uint16 value", where)); break;
    case ValueType::I16: put_i(c.scalar<int16_t>("int16 value", where)); break;
    case ValueType::U32: put_u(c.scalar<uint32_t>("uint32 value", where)); break;
    case ValueType::I32: put_i(c.scalar<int32_t>("int32 value", where)); break;
    case ValueType::U64: put_u(c.scalar<uint64_t>("uint64 value", where)); break;
    case ValueType::I64: put_i(c.scalar<int64_t>("int64 value", where)); break;
    case ValueType::F32: put_f(c.scalar<float>("float32 value", where)); break;
    case ValueType::F64: put_f(c.scalar<double>("float64 value", where)); break;
    case ValueType::BOOL: put_u(read_bool(c, where)); break;
    case ValueType::STRING: {
      std::string_view s = c.string("string value", where);
      if (array) out.arr_s.emplace_back(s);
      else out.s.assign(s);
      break;
    }
    case ValueType::ARRAY: break;  // handled by the caller
  }
}

template <typename Where>
Value read_value(Cursor& c, ValueType t, const Where& where) {
  Value v;
  v.type = t;
  if (t != ValueType::ARRAY) {
    read_scalar(c, t, v, false, where);
    return v;
  }
  const uint32_t item = c.scalar<uint32_t>("array element type", where);
  if (item == uint32_t(ValueType::ARRAY))
    c.error(where(), ": nested array (element type 9) is not supported, expected an array of scalars or strings");
  if (item > uint32_t(ValueType::F64)) c.error(where(), ": unknown array element type ", item, ", expected 0..12 (not 9)");
  v.item_type = ValueType(item);
  const uint64_t count = c.scalar<uint64_t>("array count", where);
  const uint64_t size = fixed_size(v.item_type);
  const char* item_name = value_type_name(v.item_type);
  if (size != 0 && count > c.remaining() / size)
    c.error(where(), ": array of ", count, " ", item_name, " elements needs ", count, " x ", size, " bytes, only ",
            c.remaining(), " bytes are left in the file");
  if (size == 0 && count > c.remaining() / 8)
    c.error(where(), ": array of ", count, " strings cannot fit in the ", c.remaining(),
            " bytes left in the file (each string needs at least 8)");
  if (count > kMaxArrayElements)
    c.error(where(), ": array of ", count, " elements exceeds the maximum of ", kMaxArrayElements);
  // count is now bounded by the bytes present, so reserving is safe.
  switch (v.item_type) {
    case ValueType::STRING: v.arr_s.reserve(count); break;
    case ValueType::F32: case ValueType::F64: v.arr_f.reserve(count); break;
    case ValueType::I8: case ValueType::I16: case ValueType::I32: case ValueType::I64: v.arr_i.reserve(count); break;
    default: v.arr_u.reserve(count); break;
  }
  for (uint64_t k = 0; k < count; ++k) read_scalar(c, v.item_type, v, true, where);
  return v;
}

// ---- header -------------------------------------------------------------------------

void check_magic_and_version(Cursor& c, std::span<const uint8_t> b, uint32_t& version) {
  if (b.size() >= 4 && std::memcmp(b.data(), "GGUF", 4) != 0) {
    std::string shown;
    for (int k = 0; k < 4; ++k) {
      const uint8_t ch = b[k];
      shown += (ch >= 0x20 && ch < 0x7f) ? std::string(1, char(ch)) : str("\\x", std::hex, unsigned(ch));
    }
    c.error("not a GGUF file: bad magic \"", shown, "\" at offset 0, expected \"GGUF\"");
  }
  if (b.size() < kHeaderBytes) {
    const char* cut = b.size() < 4 ? "magic" : b.size() < 8 ? "version" : b.size() < 16 ? "tensor count" : "KV count";
    const int at = b.size() < 4 ? 0 : b.size() < 8 ? 4 : b.size() < 16 ? 8 : 16;
    c.error("truncated header: file has ", b.size(), " bytes, a GGUF header needs ", kHeaderBytes, " (", cut,
            " at offset ", at, " cut short)");
  }
  auto header = [] { return std::string("header"); };
  c.scalar<uint32_t>("magic", header);
  version = c.scalar<uint32_t>("version", header);
  if (version == 2 || version == 3) return;
  if (version == 0) c.error("bad GGUF version 0, expected 2 or 3");
  if (version == 1) c.error("unsupported GGUF version 1 (v1 used 32-bit counts and is obsolete), expected 2 or 3");
  if ((version & 0xffff) == 0) {
    c.error("GGUF version ", version, " (0x", std::hex, std::setw(8), std::setfill('0'), version, std::dec, ") looks like a byte-swapped ",
            __builtin_bswap32(version), ": big-endian GGUF files are not supported, expected a little-endian file of version 2 or 3");
  }
  c.error("unsupported GGUF version ", version, ", expected 2 or 3 (this reader knows up to 3)");
}

uint64_t read_alignment(const Cursor& c, const std::vector<std::pair<std::string, Value>>& kv) {
  for (const auto& [key, v] : kv) {
    if (key != "general.alignment") continue;
    if (v.type != ValueType::U32)
      c.error("general.alignment has type ", value_type_name(v.type), ", expected uint32");
    if (v.u == 0 || (v.u & (v.u - 1)) != 0)
      c.error("general.alignment ", v.u, " is not a power of two, expected a non-zero power of two");
    return v.u;
  }
  return kDefaultAlignment;
}

bool read_header_only(const Cursor& c, const std::vector<std::pair<std::string, Value>>& kv) {
  for (const auto& [key, v] : kv) {
    if (key != kHeaderOnlyKey) continue;
    if (v.type != ValueType::BOOL) c.error(kHeaderOnlyKey, " has type ", value_type_name(v.type), ", expected bool");
    return v.u != 0;
  }
  return false;
}

// ---- tensor infos -----------------------------------------------------------------

TensorInfo read_tensor_info(Cursor& c, uint64_t index) {
  TensorInfo t;
  t.name.assign(c.string("name", [&] { return str("tensor #", index); }, kMaxTensorName, " (ggml: 63)"));
  auto where = [&] { return str("tensor \"", t.name, "\""); };

  t.n_dims = c.scalar<uint32_t>("n_dims", where);
  if (t.n_dims > kMaxDims) c.error(where(), ": n_dims ", t.n_dims, " exceeds the maximum of ", kMaxDims);
  for (uint32_t d = 0; d < t.n_dims; ++d) {
    const uint64_t v = c.scalar<uint64_t>("dimension", where);
    if (v > uint64_t(std::numeric_limits<int64_t>::max()))
      c.error(where(), ": dimension ", d, " is ", v, " (", int64_t(v), " as int64), expected at most INT64_MAX");
    t.ne[d] = int64_t(v);
  }
  const uint32_t type_id = c.scalar<uint32_t>("type", where);
  t.offset = c.scalar<uint64_t>("offset", where);

  // Element count with checked multiplication: a wrapped product (2^32 x 2^32 == 0)
  // must never reach a size computation (hostile/ne_overflow_wraps_to_zero.gguf).
  int64_t n = 1;
  for (uint32_t d = 0; d < 4; ++d)
    if (__builtin_mul_overflow(n, t.ne[d], &n))
      c.error(where(), ": element count ", shape_str(t.ne, t.n_dims), " overflows int64");

  const auto tr = type_traits(type_id);
  if (!tr) {
    if (const char* old = removed_type_name(type_id))
      c.error(where(), ": ggml type ", type_id, " (", old, ") was removed from ggml and is not supported");
    c.error(where(), ": unknown ggml type ", type_id, ", expected a known ggml type id (0..42)");
  }
  t.type = tr->type;
  if (t.ne[0] % tr->block != 0)
    c.error(where(), ": ne0 ", t.ne[0], " is not a multiple of the ", tr->name, " block size ", tr->block);
  const uint64_t blocks = uint64_t(n / tr->block);
  if (__builtin_mul_overflow(blocks, uint64_t(tr->bytes), &t.n_bytes))
    c.error(where(), ": byte size of ", blocks, " ", tr->name, " blocks x ", tr->bytes, " bytes (shape ",
            shape_str(t.ne, t.n_dims), ") overflows uint64");
  return t;
}

// Spec rule: tensors may come in any order and leave gaps, but never share bytes.
void check_overlap(const Cursor& c, const std::vector<TensorInfo>& ts) {
  std::vector<size_t> order;
  for (size_t i = 0; i < ts.size(); ++i)
    if (ts[i].n_bytes > 0) order.push_back(i);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ts[a].offset < ts[b].offset; });
  for (size_t k = 1; k < order.size(); ++k) {
    const TensorInfo& a = ts[order[k - 1]];
    const TensorInfo& b = ts[order[k]];
    const uint64_t a_end = a.offset + a.n_bytes;  // cannot wrap: checked by the caller
    if (b.offset >= a_end) continue;
    const uint64_t shared_end = std::min(a_end, b.offset + b.n_bytes);
    if (a.offset == b.offset)
      c.error("tensors \"", a.name, "\" and \"", b.name, "\" share bytes [", b.offset, ", ", shared_end,
              ") (both at offset ", a.offset, "), expected disjoint byte ranges");
    c.error("tensors \"", a.name, "\" [", a.offset, ", ", a_end, ") and \"", b.name, "\" [", b.offset, ", ",
            b.offset + b.n_bytes, ") overlap, expected disjoint byte ranges");
  }
}

}  // namespace

// ---- the whole shard --------------------------------------------------------------------

Shard parse_shard(std::span<const uint8_t> bytes, const std::string& name, const OpenOptions& opts) {
  Shard s;
  s.file_size = bytes.size();
  Cursor c(bytes, name);
  check_magic_and_version(c, bytes, s.version);

  auto header = [] { return std::string("header"); };
  const uint64_t tensor_count = c.scalar<uint64_t>("tensor count", header);
  const uint64_t kv_count = c.scalar<uint64_t>("KV count", header);
  // Counts come from the attacker: bound them by the bytes present before any loop.
  if (tensor_count > c.remaining() / kMinTensorInfoBytes)
    c.error("tensor count ", tensor_count, " cannot fit: each tensor info needs at least ", kMinTensorInfoBytes,
            " bytes and only ", c.remaining(), " bytes follow the header");
  if (kv_count > c.remaining() / kMinKvBytes)
    c.error("KV count ", kv_count, " cannot fit: each KV needs at least ", kMinKvBytes, " bytes and only ",
            c.remaining(), " bytes follow the header");

  std::map<std::string, uint64_t, std::less<>> keys;
  for (uint64_t i = 0; i < kv_count; ++i) {
    const uint64_t key_at = c.pos();
    std::string key(c.string("key", [&] { return str("KV #", i); }));
    if (key.empty()) c.error("KV #", i, " has an empty key (at offset ", key_at, "), expected a non-empty key");
    auto where = [&] { return str("KV #", i, " \"", key, "\""); };
    const uint32_t type = c.scalar<uint32_t>("value type", where);
    if (type > uint32_t(ValueType::F64)) c.error(where(), ": unknown value type ", type, ", expected 0..12");
    Value v = read_value(c, ValueType(type), where);
    auto [it, fresh] = keys.emplace(key, i);
    if (!fresh)
      c.error("duplicate metadata key \"", key, "\" (KVs #", it->second, " and #", i, "), expected unique keys");
    s.kv.emplace_back(std::move(key), std::move(v));
  }
  s.alignment = read_alignment(c, s.kv);
  s.header_only = read_header_only(c, s.kv);
  if (s.header_only && !opts.allow_header_only)
    c.error("header-only GGUF (", kHeaderOnlyKey, " = true) holds no tensor data, expected a full model file "
            "(only planning commands accept header-only files)");

  if (tensor_count > c.remaining() / kMinTensorInfoBytes)
    c.error("tensor count ", tensor_count, " cannot fit: each tensor info needs at least ", kMinTensorInfoBytes,
            " bytes and only ", c.remaining(), " bytes follow the metadata");
  std::map<std::string, uint64_t, std::less<>> names;
  for (uint64_t i = 0; i < tensor_count; ++i) {
    TensorInfo t = read_tensor_info(c, i);
    auto [it, fresh] = names.emplace(t.name, i);
    if (!fresh)
      c.error("duplicate tensor name \"", t.name, "\" (tensor infos #", it->second, " and #", i,
              "), expected unique names");
    s.tensors.push_back(std::move(t));
  }
  s.tensor_info_end = c.pos();

  // The data section starts at the next multiple of the alignment (checked: padding
  // near 2^64 wraps).
  uint64_t data_offset = 0;
  if (__builtin_add_overflow(s.tensor_info_end, s.alignment - 1, &data_offset))
    c.error("data section offset overflows uint64 (tensor infos end at ", s.tensor_info_end, ", alignment ",
            s.alignment, ")");
  data_offset &= ~(s.alignment - 1);
  if (tensor_count == 0) {
    // Nothing is read from the data section; gguf-py pads anyway, ggml does not seek.
    s.data_offset = std::min<uint64_t>(data_offset, s.file_size);
    return s;
  }
  s.data_offset = data_offset;
  if (!s.header_only && s.data_offset > s.file_size)
    c.error("data section starts at byte ", s.data_offset, " (tensor infos end at ", s.tensor_info_end,
            ", alignment ", s.alignment, "), beyond the end of the file (", s.file_size, " bytes)");
  const uint64_t data_size = s.header_only ? std::numeric_limits<uint64_t>::max() - s.data_offset
                                           : s.file_size - s.data_offset;

  for (TensorInfo& t : s.tensors) {
    if (t.offset % s.alignment != 0)
      c.error("tensor \"", t.name, "\": offset ", t.offset, " is not a multiple of general.alignment (", s.alignment, ")");
    if (t.offset > data_size || t.n_bytes > data_size - t.offset) {
      if (s.header_only)
        c.error("tensor \"", t.name, "\": bytes [", t.offset, ", +", t.n_bytes, ") do not fit in a 64-bit file");
      c.error("tensor \"", t.name, "\": bytes [", t.offset, ", +", t.n_bytes, ") lie beyond the data section (",
              data_size, " bytes), expected them to end within it");
    }
    t.file_offset = s.data_offset + t.offset;
  }
  check_overlap(c, s.tensors);
  return s;
}

}  // namespace fp::gguf::detail
