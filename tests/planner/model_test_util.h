// Helpers for the model tests: a scratch directory, synth models, and rewriting a GGUF
// with edited metadata or tensors (to build broken files with the real writer).
#pragma once
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "planner/gguf/gguf.h"
#include "planner/model/synth.h"

namespace fp::test {

// One directory per test process, removed when the process exits.
inline std::string scratch_dir() {
  struct Dir {
    std::string path;
    Dir() {
      auto d = std::filesystem::temp_directory_path() / ("fp_model_test_" + std::to_string(getpid()));
      std::filesystem::create_directories(d);
      path = d.string();
    }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static const Dir dir;
  return dir.path;
}

inline std::string scratch(const std::string& name) { return scratch_dir() + "/" + name; }

inline std::string hf_tiny_path() { return std::string(FLASHPLAN_TEST_DATA) + "/hf/seed1/tiny.gguf"; }

// Writes a synth model (cached per name for the test run) and returns its path.
inline std::string synth_file(const std::string& name, SynthConfig s, bool header_only = false) {
  const std::string path = scratch(name + ".gguf");
  if (!std::filesystem::exists(path)) {
    SynthWriteOptions o;
    o.path = path;
    o.header_only = header_only;
    write_synth(s, o);
  }
  return path;
}

struct TensorEntry {
  std::string name;
  DType type;
  std::vector<int64_t> ne;
};
using Metadata = std::vector<std::pair<std::string, gguf::Value>>;

// Copies src to dst through gguf::Writer after letting the callers edit the metadata and
// the tensor table. Unchanged tensors keep their bytes; changed or new ones are zeros.
inline void rewrite(const std::string& src, const std::string& dst,
                    const std::function<void(std::vector<TensorEntry>&)>& edit_tensors,
                    const std::function<void(Metadata&)>& edit_kv = {}) {
  gguf::File f = gguf::File::open(src);
  Metadata kv;
  for (const auto& [k, v] : f.metadata())
    if (k != "general.alignment") kv.emplace_back(k, v);
  if (edit_kv) edit_kv(kv);
  std::vector<TensorEntry> ts;
  for (const auto& t : f.tensors()) ts.push_back({t.name, t.type, std::vector<int64_t>(t.ne.begin(), t.ne.begin() + t.n_dims)});
  if (edit_tensors) edit_tensors(ts);
  gguf::Writer w;
  w.set_alignment(uint32_t(f.alignment()));
  for (auto& [k, v] : kv) w.add(k, v);
  for (const auto& t : ts) w.add_tensor(t.name, t.type, t.ne);
  w.write(dst, [&](size_t i, std::span<uint8_t> out) {
    const gguf::TensorInfo* old = f.tensor(ts[i].name);
    if (old && old->type == ts[i].type && old->n_bytes == out.size()) {
      auto b = f.bytes(*old);
      std::memcpy(out.data(), b.data(), out.size());
    } else {
      std::memset(out.data(), 0, out.size());
    }
  });
}

inline void set_kv(Metadata& kv, const std::string& key, gguf::Value v) {
  for (auto& [k, old] : kv)
    if (k == key) {
      old = std::move(v);
      return;
    }
  kv.emplace_back(key, std::move(v));
}

inline void drop_kv(Metadata& kv, const std::string& key) {
  std::erase_if(kv, [&](auto& p) { return p.first == key; });
}

}  // namespace fp::test
