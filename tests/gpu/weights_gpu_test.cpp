// VMM mappings, pinned host memory and load_weights(): a small GGUF written here is loaded
// with device and host placements (several readers, small chunks, so reads, copies and
// staging-buffer reuse all overlap) and every byte is compared with the file; random
// weights fill a header-only copy; out-of-memory names the tensor.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <random>

#include "ops/core/error.h"
#include "ops/quant/dequant.h"
#include "runtime/cuda/device_weights.h"
#include "runtime/cuda/vmm.h"
#include "tests/gpu/gpu_util.h"

using namespace fp;
using namespace fp::test;

namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("flashplan-gpu-" + std::to_string(::getpid()) + "-" + name)).string();
}

struct TempFile {
  std::string path;
  ~TempFile() { std::filesystem::remove(path); }
};

// A GGUF of a few tensors of different types and sizes (up to a few MiB), random bytes.
TempFile write_model(const std::string& name, bool header_only) {
  gguf::Writer w;
  w.add("general.architecture", gguf::Value::make_string("test"));
  w.add("test.expert_count", gguf::Value::make_u32(16));
  w.add_tensor("tok.weight", DType::F16, {512, 3001});
  w.add_tensor("blk.0.attn_norm.weight", DType::F32, {4096});
  w.add_tensor("blk.0.ffn_gate_exps.weight", DType::IQ2_XXS, {1024, 64, 16});
  w.add_tensor("blk.0.attn_q.weight", DType::Q8_0, {1024, 1100});
  w.add_tensor("blk.0.ffn_gate_tid2eid.weight", DType::I32, {6, 1000});
  TempFile f{temp_path(name)};
  w.write(
      f.path,
      [](size_t i, std::span<uint8_t> dst) {
        std::mt19937_64 rng(1000 + i);
        for (auto& b : dst) b = uint8_t(rng());
      },
      header_only);
  return f;
}

std::vector<uint8_t> device_bytes(const cuda::DeviceTensor& t) {
  std::vector<uint8_t> v(t.bytes);
  GPU_CHECK(cudaMemcpy(v.data(), t.ptr, t.bytes, cudaMemcpyDefault));
  return v;
}

}  // namespace

TEST_CASE("vmm: mappings are 2 MiB-aligned, sized to the granularity, writable, and freed") {
  const uint64_t gran = cuda::vmm_granularity(0);
  CHECK(gran > 0);
  uint64_t free0 = 0, total = 0;
  cuda::device_memory(0, free0, total);
  {
    std::vector<cuda::VmmMapping> maps;
    for (uint64_t bytes : {uint64_t(1), uint64_t((3ull << 20) + 5), uint64_t(64ull << 20)}) {
      maps.push_back(cuda::VmmMapping::create(0, bytes, "test.tensor"));
      const cuda::VmmMapping& m = maps.back();
      CHECK(reinterpret_cast<uintptr_t>(m.ptr()) % cuda::kVmmAlignment == 0);
      CHECK(m.mapped() % gran == 0);
      CHECK(m.mapped() >= bytes);
      std::vector<uint8_t> pattern(bytes);
      for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = uint8_t(i * 7 + bytes);
      GPU_CHECK(cudaMemcpy(m.ptr(), pattern.data(), bytes, cudaMemcpyHostToDevice));
      std::vector<uint8_t> back(bytes);
      GPU_CHECK(cudaMemcpy(back.data(), m.ptr(), bytes, cudaMemcpyDeviceToHost));
      CHECK(back == pattern);
    }
    uint64_t free1 = 0;
    cuda::device_memory(0, free1, total);
    CHECK(free1 + (64ull << 20) <= free0);
  }
  uint64_t free2 = 0;
  cuda::device_memory(0, free2, total);
  CHECK(free2 + (8ull << 20) >= free0);  // released (within allocator noise)
}

TEST_CASE("vmm: out of memory names the tensor and the free and needed bytes") {
  try {
    (void)cuda::VmmMapping::create(0, 1ull << 50, "blk.7.ffn_up_exps.weight");
    FAIL("a 1 PiB mapping succeeded");
  } catch (const fp::Error& e) {
    const std::string m = e.what();
    CHECK(m.find("blk.7.ffn_up_exps.weight") != std::string::npos);
    CHECK(m.find("free") != std::string::npos);
    CHECK(m.find(std::to_string(1ull << 50)) != std::string::npos);
  }
}

TEST_CASE("pinned host memory is reachable from the device") {
  cuda::PinnedHost h = cuda::PinnedHost::create(1 << 20, "host.tensor");
  std::memset(h.host(), 0x5a, 1 << 20);
  std::vector<uint8_t> back(1 << 20);
  GPU_CHECK(cudaMemcpy(back.data(), h.dev_ptr(), back.size(), cudaMemcpyDefault));
  CHECK(back == std::vector<uint8_t>(1 << 20, 0x5a));
}

TEST_CASE("load_weights: every byte of device and host placements matches the file") {
  const TempFile f = write_model("load.gguf", false);
  const gguf::File file = gguf::File::open(f.path);
  std::vector<cuda::WeightPlacement> pl = cuda::all_on_device(file);
  pl[3].where = cuda::Placement::host;  // the Q8_0 tensor lives in pinned host memory
  pl.erase(pl.begin() + 1);             // and the norm is not placed at all
  for (bool direct : {true, false}) {
    CAPTURE(direct);
    cuda::LoadOptions o;
    o.readers = 3;
    o.chunk_bytes = 1 << 20;
    o.staging_buffers = 2;
    o.direct_io = direct;
    uint64_t last = 0;
    bool finished = false;
    o.progress = [&](const cuda::LoadProgress& p) {
      last = p.done_bytes;
      finished = finished || p.finished;
    };
    const cuda::DeviceWeights w = cuda::load_weights(file, pl, o);
    CHECK(w.tensors().size() == 4);
    CHECK(w.find("blk.0.attn_norm.weight") == nullptr);
    CHECK_THROWS_AS((void)w.at("blk.0.attn_norm.weight"), fp::Error);
    uint64_t total = 0;
    for (const cuda::DeviceTensor& t : w.tensors()) {
      CAPTURE(t.name);
      const gguf::TensorInfo& info = file.require_tensor(t.name);
      const auto want = file.bytes(info);
      CHECK(device_bytes(t) == std::vector<uint8_t>(want.begin(), want.end()));
      if (t.where == cuda::Placement::device) CHECK(reinterpret_cast<uintptr_t>(t.ptr) % cuda::kVmmAlignment == 0);
      total += t.bytes;
    }
    CHECK(w.host_bytes() == file.require_tensor("blk.0.attn_q.weight").n_bytes);
    CHECK(w.stats().bytes == total);
    CHECK(finished);
    CHECK(last == total);
    MESSAGE(fp::str("load (direct_io requested ", direct, "): ", total, " bytes, O_DIRECT used: ", w.stats().direct_io));
  }
}

TEST_CASE("load_weights: random weights on a header-only GGUF; errors name the tensor") {
  const TempFile f = write_model("header.gguf", true);
  gguf::OpenOptions oo;
  oo.allow_header_only = true;
  const gguf::File file = gguf::File::open(f.path, oo);
  CHECK_THROWS_AS(cuda::load_weights(file, cuda::all_on_device(file)), fp::Error);  // no data to read
  cuda::LoadOptions o;
  o.random_seed = 42;
  const cuda::DeviceWeights w = cuda::load_weights(file, cuda::all_on_device(file), o);
  for (const cuda::DeviceTensor& t : w.tensors()) {
    CAPTURE(t.name);
    const std::vector<uint8_t> b = device_bytes(t);
    if (t.type == DType::I32) {
      std::vector<int32_t> v(b.size() / 4);
      std::memcpy(v.data(), b.data(), b.size());
      for (int32_t id : v) REQUIRE((id >= 0 && id < 16));
      continue;
    }
    const int64_t n = file.require_tensor(t.name).n_elements();
    std::vector<float> v(static_cast<size_t>(n));
    dequantize_row(t.type, b.data(), v.data(), n);
    for (float x : v) REQUIRE(std::isfinite(x));
    if (t.name == "blk.0.attn_norm.weight") CHECK(std::abs(v[0] - 1.0f) <= 0.06f);
  }
  std::vector<cuda::WeightPlacement> bad = {{"blk.0.attn_q.weight", cuda::Placement::device, 99}};
  try {
    (void)cuda::load_weights(file, bad, o);
    FAIL("a placement on device 99 loaded");
  } catch (const fp::Error& e) {
    CHECK(std::string(e.what()).find("blk.0.attn_q.weight") != std::string::npos);
  }
  bad = {{"blk.0.no_such.weight", cuda::Placement::device, 0}};
  CHECK_THROWS_AS(cuda::load_weights(file, bad, o), fp::Error);
}

TEST_CASE("load_weights: tensors of a packed chunk share one mapping at their offsets; bad packs are refused") {
  const TempFile f = write_model("packed.gguf", false);
  const gguf::File file = gguf::File::open(f.path);
  const uint64_t norm = file.require_tensor("blk.0.attn_norm.weight").n_bytes;
  const uint64_t chunk = 2ull << 20;
  auto packed = [&](std::string name, uint64_t offset, uint64_t bytes = 2ull << 20) {
    cuda::WeightPlacement p{std::move(name), cuda::Placement::device, 0};
    p.pack = 7;
    p.pack_bytes = bytes;
    p.pack_offset = offset;
    return p;
  };
  std::vector<cuda::WeightPlacement> pl = {packed("blk.0.attn_norm.weight", 0),
                                           packed("blk.0.ffn_gate_tid2eid.weight", (norm + 255) / 256 * 256),
                                           {"blk.0.attn_q.weight", cuda::Placement::device, 0}};
  {
    const cuda::DeviceWeights w = cuda::load_weights(file, pl);
    const auto& a = w.at("blk.0.attn_norm.weight");
    const auto& b = w.at("blk.0.ffn_gate_tid2eid.weight");
    CHECK(static_cast<const uint8_t*>(b.ptr) - static_cast<const uint8_t*>(a.ptr) == int64_t(pl[1].pack_offset));
    for (const cuda::DeviceTensor& t : w.tensors()) {
      CAPTURE(t.name);
      const auto want = file.bytes(file.require_tensor(t.name));
      CHECK(device_bytes(t) == std::vector<uint8_t>(want.begin(), want.end()));
    }
    const uint64_t own = (file.require_tensor("blk.0.attn_q.weight").n_bytes + chunk - 1) / chunk * chunk;
    CHECK(w.device_bytes() == chunk + own);  // the pack mapped once
  }
  {
    // A multi-GPU plan packs a small expert tensor's slice: the part (rows 100..399 of
    // attn_q here) lands at its pack offset with exactly those rows' bytes.
    const gguf::TensorInfo& q = file.require_tensor("blk.0.attn_q.weight");
    const uint64_t row = q.n_bytes / uint64_t(q.ne[1]);
    const uint64_t after_norm = (norm + 255) / 256 * 256;
    cuda::WeightPlacement part = packed("blk.0.attn_q.weight", after_norm);
    part.offset = 100 * row;
    part.bytes = 300 * row;
    part.outer_count = 300;
    const cuda::DeviceWeights w = cuda::load_weights(file, {packed("blk.0.attn_norm.weight", 0), part});
    const auto& t = w.at("blk.0.attn_q.weight");
    CHECK(t.ne[1] == 300);
    CHECK(static_cast<const uint8_t*>(t.ptr) - static_cast<const uint8_t*>(w.at("blk.0.attn_norm.weight").ptr) ==
          int64_t(after_norm));
    const auto all = file.bytes(q);
    CHECK(device_bytes(t) == std::vector<uint8_t>(all.begin() + int64_t(part.offset),
                                                  all.begin() + int64_t(part.offset + part.bytes)));
    CHECK(w.device_bytes() == chunk);
  }
  auto refused = [&](std::vector<cuda::WeightPlacement> bad, const char* want) {
    CAPTURE(want);
    try {
      (void)cuda::load_weights(file, bad);
      FAIL("loaded");
    } catch (const fp::Error& e) {
      CHECK(std::string(e.what()).find(want) != std::string::npos);
      MESSAGE(e.what());
    }
  };
  refused({packed("blk.0.attn_norm.weight", chunk - norm / 2)}, "expected a 16-byte aligned range inside it");
  refused({packed("blk.0.attn_norm.weight", 8)}, "expected a 16-byte aligned range inside it");
  refused({packed("blk.0.attn_norm.weight", 0), packed("blk.0.ffn_gate_tid2eid.weight", 4096, 4ull << 20)},
          "its other tensors gave");
  // Overlapping tensors in one pack (the readers would race over the shared bytes), in
  // either order.
  refused({packed("blk.0.attn_norm.weight", 0), packed("blk.0.ffn_gate_tid2eid.weight", 4096)}, "overlap");
  refused({packed("blk.0.ffn_gate_tid2eid.weight", 4096), packed("blk.0.attn_norm.weight", 0)}, "overlap");
}
