// `flashplan inspect` for GGUF files: what gguf-dump shows, metadata then the tensor
// table. Text shortens long arrays and strings; --json prints every value whole as
//   {"format":"gguf","version":3,"alignment":N,"metadata":{KEY:{"type":T,"value":V}},
//    "tensors":[{"name":S,"type":"Q4_K","ne":[...],"offset":N,"bytes":N}]}
// with arrays as {"type":"array","item_type":T,"value":[...]} and offsets relative to
// the data section (of the tensor's shard, for split files). Header-only GGUFs are
// shown too. JSON has no NaN or infinity: such floats print as null. Strings that are
// not valid UTF-8 have the bad bytes replaced by U+FFFD in JSON.
#include <cstring>
#include <nlohmann/json.hpp>

#include "ops/core/error.h"
#include "ops/quant/types.h"
#include "planner/gguf/gguf.h"
#include "tools/inspect.h"

namespace fp::cli::inspect {
namespace {

using gguf::Value;
using gguf::ValueType;
using ojson = nlohmann::ordered_json;

constexpr size_t kTextArrayItems = 8;     // array elements shown in text
constexpr size_t kTextStringBytes = 120;  // string bytes shown in text

// ---- JSON ---------------------------------------------------------------------------

ojson scalar_json(ValueType t, const Value& v, size_t k, bool array) {
  switch (t) {
    case ValueType::U8: case ValueType::U16: case ValueType::U32: case ValueType::U64:
      return array ? v.arr_u[k] : v.u;
    case ValueType::I8: case ValueType::I16: case ValueType::I32: case ValueType::I64:
      return array ? v.arr_i[k] : v.i;
    case ValueType::F32: case ValueType::F64: return array ? v.arr_f[k] : v.f;
    case ValueType::BOOL: return (array ? v.arr_u[k] : v.u) != 0;
    case ValueType::STRING: return array ? v.arr_s[k] : v.s;
    case ValueType::ARRAY: break;
  }
  return nullptr;
}

ojson value_json(const Value& v) {
  ojson o;
  o["type"] = gguf::value_type_name(v.type);
  if (v.type != ValueType::ARRAY) {
    o["value"] = scalar_json(v.type, v, 0, false);
    return o;
  }
  o["item_type"] = gguf::value_type_name(v.item_type);
  ojson items = ojson::array();
  for (size_t k = 0; k < v.array_size(); ++k) items.push_back(scalar_json(v.item_type, v, k, true));
  o["value"] = std::move(items);
  return o;
}

void print_json(const gguf::File& f) {
  ojson out;
  out["format"] = "gguf";
  out["version"] = f.version();
  out["alignment"] = f.alignment();
  ojson meta = ojson::object();
  for (const auto& [key, v] : f.metadata()) meta[key] = value_json(v);
  out["metadata"] = std::move(meta);
  ojson tensors = ojson::array();
  for (const auto& t : f.tensors()) {
    ojson o;
    o["name"] = t.name;
    o["type"] = dtype_name(t.type);
    o["ne"] = std::vector<int64_t>(t.ne.begin(), t.ne.begin() + t.n_dims);
    o["offset"] = t.offset;
    o["bytes"] = t.n_bytes;
    tensors.push_back(std::move(o));
  }
  out["tensors"] = std::move(tensors);
  for (const GgufSection& sec : gguf_sections())
    if (sec.json) sec.json(f, out);
  const std::string s = out.dump(-1, ' ', false, ojson::error_handler_t::replace);
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fputc('\n', stdout);
}

// ---- text ---------------------------------------------------------------------------

// A string as a quoted, escaped literal, cut after kTextStringBytes bytes.
std::string quoted(const std::string& s) {
  std::string out = "\"";
  const size_t n = std::min(s.size(), kTextStringBytes);
  for (size_t k = 0; k < n; ++k) {
    const unsigned char c = static_cast<unsigned char>(s[k]);
    if (c == '"' || c == '\\') out += str('\\', char(c));
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) out += str("\\x", std::hex, unsigned(c) >> 4, unsigned(c) & 15);
    else out += char(c);
  }
  out += '"';
  if (s.size() > n) out += str("... (", s.size(), " bytes)");
  return out;
}

std::string scalar_text(ValueType t, const Value& v, size_t k, bool array) {
  if (t == ValueType::STRING) return quoted(array ? v.arr_s[k] : v.s);
  if (t == ValueType::BOOL) return (array ? v.arr_u[k] : v.u) ? "true" : "false";
  return scalar_json(t, v, k, array).dump();
}

std::string value_text(const Value& v) {
  if (v.type != ValueType::ARRAY) return scalar_text(v.type, v, 0, false);
  std::string out = "[";
  const size_t n = std::min(v.array_size(), kTextArrayItems);
  for (size_t k = 0; k < n; ++k) out += (k ? ", " : "") + scalar_text(v.item_type, v, k, true);
  if (v.array_size() > n) out += str(", ... (", v.array_size() - n, " more)");
  return out + "]";
}

std::string type_text(const Value& v) {
  if (v.type != ValueType::ARRAY) return gguf::value_type_name(v.type);
  return str("[", gguf::value_type_name(v.item_type), " x ", v.array_size(), "]");
}

void print_text(const gguf::File& f) {
  std::printf("GGUF v%u  %s\n", f.version(), f.path().c_str());
  std::printf("  %zu shard(s), %llu bytes (shard 1), alignment %llu, data section at byte %llu%s\n", f.shard_count(),
              (unsigned long long)f.file_size(), (unsigned long long)f.alignment(),
              (unsigned long long)f.data_offset(), f.header_only() ? ", header only (no tensor data)" : "");

  size_t key_w = 3, type_w = 4;
  for (const auto& [key, v] : f.metadata()) {
    key_w = std::max(key_w, key.size());
    type_w = std::max(type_w, type_text(v).size());
  }
  std::printf("\n%zu metadata key(s):\n", f.metadata().size());
  for (const auto& [key, v] : f.metadata())
    std::printf("  %-*s  %-*s  %s\n", int(key_w), key.c_str(), int(type_w), type_text(v).c_str(), value_text(v).c_str());

  uint64_t total = 0;
  for (const auto& t : f.tensors()) total += t.n_bytes;
  std::printf("\n%zu tensor(s), %llu bytes of tensor data:\n", f.tensors().size(), (unsigned long long)total);
  const bool shards = f.shard_count() > 1;
  std::printf("  %5s  %-8s  %-28s  %14s  %14s  %s%s\n", "#", "type", "ne", "offset", "bytes", shards ? "shard  " : "",
              "name");
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const auto& t = f.tensors()[i];
    std::string ne = "[";
    for (uint32_t d = 0; d < t.n_dims; ++d) ne += str(d ? ", " : "", t.ne[d]);
    ne += "]";
    std::printf("  %5zu  %-8s  %-28s  %14llu  %14llu  %s%s\n", i, dtype_name(t.type), ne.c_str(),
                (unsigned long long)t.offset, (unsigned long long)t.n_bytes,
                shards ? str(t.shard + 1, "      ").substr(0, 7).c_str() : "", t.name.c_str());
  }
  for (const GgufSection& s : gguf_sections()) s.text(f, stdout);
}

int run_gguf(const std::string& path, bool json) {
  gguf::OpenOptions opts;
  opts.allow_header_only = true;
  const gguf::File f = gguf::File::open(path, opts);
  if (json) print_json(f);
  else print_text(f);
  return 0;
}

}  // namespace
}  // namespace fp::cli::inspect

FP_INSPECT_KIND("gguf", "magic \"GGUF\" at byte 0",
                // A *.gguf name also counts, so that a damaged GGUF gets the reader's error.
                [](const std::string& path, std::span<const uint8_t> head) {
                  const bool magic = head.size() >= 4 && std::memcmp(head.data(), "GGUF", 4) == 0;
                  return magic || (path.size() > 5 && path.compare(path.size() - 5, 5, ".gguf") == 0);
                },
                fp::cli::inspect::run_gguf);
