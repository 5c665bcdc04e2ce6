// Canonical encoding hashed by gguf_fingerprint: little-endian fixed-width integers,
// strings as u64 length + bytes, values tagged with their GGUF type, arrays with their
// item type and count. Independent of how the file was laid out (padding, data offset).
#include "planner/plan_io/fingerprint.h"

#include <cstring>

#include "planner/plan_io/sha256.h"

namespace fp {

namespace {

constexpr const char* kHeaderOnlyKey = "flashplan.header_only";

struct Enc {
  Sha256 h;
  void u64(uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
    h.update(b, 8);
  }
  void f64(double v) {
    uint64_t u;
    std::memcpy(&u, &v, 8);
    u64(u);
  }
  void text(const std::string& s) {
    u64(s.size());
    h.update(s);
  }
  void value(const gguf::Value& v) {
    using T = gguf::ValueType;
    u64(static_cast<uint64_t>(v.type));
    switch (v.type) {
      case T::U8: case T::U16: case T::U32: case T::U64: case T::BOOL: u64(v.u); break;
      case T::I8: case T::I16: case T::I32: case T::I64: u64(static_cast<uint64_t>(v.i)); break;
      case T::F32: case T::F64: f64(v.f); break;
      case T::STRING: text(v.s); break;
      case T::ARRAY:
        u64(static_cast<uint64_t>(v.item_type));
        u64(v.array_size());
        for (uint64_t x : v.arr_u) u64(x);
        for (int64_t x : v.arr_i) u64(static_cast<uint64_t>(x));
        for (double x : v.arr_f) f64(x);
        for (const auto& s : v.arr_s) text(s);
        break;
    }
  }
};

}  // namespace

std::string gguf_fingerprint(const gguf::File& f) {
  Enc e;
  e.text("flashplan.gguf-fingerprint.v1");
  e.u64(f.version());
  e.u64(f.alignment());
  uint64_t n_meta = 0;
  for (const auto& kv : f.metadata()) n_meta += kv.first != kHeaderOnlyKey;
  e.u64(n_meta);
  for (const auto& [key, value] : f.metadata()) {
    if (key == kHeaderOnlyKey) continue;
    e.text(key);
    e.value(value);
  }
  e.u64(f.tensors().size());
  for (const auto& t : f.tensors()) {
    e.text(t.name);
    e.u64(static_cast<uint64_t>(t.type));
    e.u64(t.n_dims);
    for (int64_t d : t.ne) e.u64(static_cast<uint64_t>(d));
    e.u64(t.shard);
    e.u64(t.offset);
  }
  return e.h.hex();
}

}  // namespace fp
