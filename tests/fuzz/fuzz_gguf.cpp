// libFuzzer target for the GGUF reader: any bytes must either parse or throw fp::Error
// (never crash, read out of bounds, hang or allocate in proportion to a number read
// from the input). What parses is also pushed through every accessor and through the
// writer: re-laying the same metadata and tensor table out and parsing that again
// must succeed and give the same keys, values and tensor shapes.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "ops/core/error.h"
#include "planner/gguf/gguf.h"

using namespace fp::gguf;

namespace {

void touch(const File& f) {
  for (const auto& [key, v] : f.metadata()) {
    if (f.find(key) != &v) __builtin_trap();
    (void)v.array_size();
    try {
      (void)f.get_int(key);
    } catch (const fp::Error&) {
    }
  }
  volatile uint8_t sink = 0;
  for (const auto& t : f.tensors()) {
    if (f.tensor(t.name) != &t) __builtin_trap();
    if (f.header_only()) continue;
    const auto b = f.bytes(t);
    if (b.size() != t.n_bytes) __builtin_trap();
    if (!b.empty()) sink = sink + b.front() + b.back();
  }
  if (!f.tensors().empty()) (void)f.near_names(f.tensors()[0].name + "x", 3);
}

void relayout_and_reparse(const File& f) {
  Writer w;
  for (const auto& [key, v] : f.metadata()) w.add(key, v);
  for (const auto& t : f.tensors())
    w.add_tensor(t.name, t.type, std::vector<int64_t>(t.ne.begin(), t.ne.begin() + t.n_dims));
  OpenOptions opts;
  opts.allow_header_only = true;
  const File g = File::from_bytes(w.header_bytes(true), "relayout.gguf", opts);
  const size_t extra = f.find("flashplan.header_only") ? 0 : 1;
  if (g.metadata().size() != f.metadata().size() + extra || g.tensors().size() != f.tensors().size()) __builtin_trap();
  for (size_t k = 0; k < f.metadata().size(); ++k) {
    const auto& [ka, a] = f.metadata()[k];
    const auto& [kb, b] = g.metadata()[k];
    if (ka != kb || a.type != b.type || a.u != b.u || a.i != b.i || a.s != b.s || a.arr_s != b.arr_s ||
        a.arr_u != b.arr_u || a.arr_i != b.arr_i)
      if (ka != "flashplan.header_only") __builtin_trap();
  }
  for (size_t k = 0; k < f.tensors().size(); ++k) {
    const auto& a = f.tensors()[k];
    const auto& b = g.tensors()[k];
    if (a.name != b.name || a.type != b.type || a.ne != b.ne || a.n_bytes != b.n_bytes) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  OpenOptions opts;
  opts.allow_header_only = size > 0 && (data[size - 1] & 1);
  try {
    const File f = File::from_bytes(std::vector<uint8_t>(data, data + size), "fuzz.gguf", opts);
    touch(f);
    relayout_and_reparse(f);
  } catch (const fp::Error&) {
  }
  return 0;
}
