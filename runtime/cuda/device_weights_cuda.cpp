// load_weights() and DeviceWeights (device_weights.h): maps each placed tensor, then fills
// it from the file (loader_cuda.cpp) or with random valid blocks on the device.
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <unistd.h>
#include <iterator>
#include <map>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "ops/core/error.h"
#include "ops/quant/quant_cuda.h"
#include "runtime/cuda/device_weights.h"
#include "runtime/cuda/loader.h"
#include "planner/plan_io/plan_view.h"
#include "runtime/cuda/vmm.h"

namespace fp::cuda {
namespace {

std::string gib(uint64_t b) { return str(format_gib(double(b)), " (", b, " bytes)"); }

// Bytes of `t` that placement `p` holds (a part, or the whole tensor).
uint64_t placed_bytes(const WeightPlacement& p, const gguf::TensorInfo& t) { return p.bytes ? p.bytes : t.n_bytes; }

}  // namespace

struct DeviceWeights::Impl {
  std::vector<DeviceTensor> tensors;
  std::unordered_map<std::string, size_t> index;
  std::vector<VmmMapping> vmm;  // in creation order; released in reverse
  std::vector<PinnedHost> host;
  uint64_t device_bytes = 0, host_bytes = 0;
  LoadStats stats;
  ~Impl() {
    while (!vmm.empty()) vmm.pop_back();
    while (!host.empty()) host.pop_back();
  }
};

DeviceWeights::DeviceWeights() : impl_(std::make_unique<Impl>()) {}
DeviceWeights::DeviceWeights(DeviceWeights&&) noexcept = default;
DeviceWeights& DeviceWeights::operator=(DeviceWeights&&) noexcept = default;
DeviceWeights::~DeviceWeights() = default;

const std::vector<DeviceTensor>& DeviceWeights::tensors() const { return impl_->tensors; }
uint64_t DeviceWeights::device_bytes() const { return impl_->device_bytes; }
uint64_t DeviceWeights::host_bytes() const { return impl_->host_bytes; }
const LoadStats& DeviceWeights::stats() const { return impl_->stats; }

const DeviceTensor* DeviceWeights::find(std::string_view name) const {
  auto it = impl_->index.find(std::string(name));
  return it == impl_->index.end() ? nullptr : &impl_->tensors[it->second];
}

const DeviceTensor& DeviceWeights::at(std::string_view name) const {
  const DeviceTensor* t = find(name);
  if (!t) fail("weights: tensor \"", name, "\" was not loaded (not placed by the plan)");
  return *t;
}

std::vector<WeightPlacement> all_on_device(const gguf::File& f, int device) {
  std::vector<WeightPlacement> out;
  for (const gguf::TensorInfo& t : f.tensors()) out.push_back({t.name, Placement::device, device});
  return out;
}

namespace {

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) h = (h ^ uint8_t(c)) * 0x100000001b3ull;
  return h;
}

// The model's expert count (any "*.expert_count" key), the range of random I32 ids.
int64_t expert_count(const gguf::File& f) {
  for (const auto& [key, v] : f.metadata()) {
    const std::string_view k = key;
    if (k.size() > 13 && k.substr(k.size() - 13) == ".expert_count") return int64_t(v.u ? v.u : uint64_t(v.i));
  }
  return 0;
}

}  // namespace

RandomTensorFill random_fill_for(const gguf::TensorInfo& t, uint64_t seed) {
  RandomTensorFill r;
  r.seed = seed * 0x9e3779b97f4a7c15ull ^ fnv1a(t.name);
  const bool is_float = t.type == DType::F32 || t.type == DType::F16 || t.type == DType::BF16;
  if (is_float && t.name.find("norm") != std::string::npos) r.center = 1.0f;
  return r;
}

ProgressFn stderr_progress_bar() {
  const bool tty = isatty(STDERR_FILENO);
  return [tty](const LoadProgress& p) {
    if (!tty && !p.finished) return;
    const double gib = double(1ull << 30);
    const double frac = p.total_bytes ? double(p.done_bytes) / double(p.total_bytes) : 1.0;
    char bar[31];
    const int fill = int(frac * 30);
    for (int i = 0; i < 30; ++i) bar[i] = i < fill ? '#' : ' ';
    bar[30] = 0;
    std::fprintf(stderr, "\rweights [%s] %.1f/%.1f GiB  %.2f GiB/s%s", bar, double(p.done_bytes) / gib,
                 double(p.total_bytes) / gib, p.seconds > 0 ? double(p.done_bytes) / gib / p.seconds : 0.0,
                 p.finished ? "\n" : "");
    std::fflush(stderr);
  };
}

DeviceWeights load_weights(const gguf::File& file, const std::vector<WeightPlacement>& placements,
                           const LoadOptions& opts) {
  int n_dev = 0;
  if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
    cudaGetLastError();
    fail("load weights: no CUDA device");
  }
  if (file.header_only() && !opts.random_seed)
    fail(file.path(), ": a header-only GGUF has no tensor data; load it with random weights (--weights random:SEED)");

  // Before mapping anything: do the device-placed tensors fit in what is free? Name the
  // first one that does not, with the bytes needed and free, instead of failing halfway.
  {
    std::vector<uint64_t> need(size_t(n_dev), 0), all(size_t(n_dev), 0), free_b(size_t(n_dev), 0),
        total_b(size_t(n_dev), 0), gran(size_t(n_dev), 0);
    std::vector<const WeightPlacement*> first_short(size_t(n_dev), nullptr);
    std::vector<uint64_t> need_at_short(size_t(n_dev), 0);
    for (int d = 0; d < n_dev; ++d) {
      bool used = false;
      for (const WeightPlacement& p : placements) used |= p.where == Placement::device && p.device == d;
      if (!used) continue;
      device_memory(d, free_b[size_t(d)], total_b[size_t(d)]);
      gran[size_t(d)] = vmm_granularity(d);
    }
    std::unordered_set<int64_t> packs_counted;
    for (const WeightPlacement& p : placements) {
      if (p.where != Placement::device || p.device < 0 || p.device >= n_dev) continue;
      if (p.pack >= 0 && !packs_counted.insert(p.pack).second) continue;  // a packed chunk counts once
      const size_t d = size_t(p.device);
      const uint64_t bytes = p.pack >= 0 ? p.pack_bytes : placed_bytes(p, file.require_tensor(p.tensor));
      const uint64_t rounded = (std::max<uint64_t>(bytes, 1) + gran[d] - 1) / gran[d] * gran[d];
      all[d] += rounded;
      if (first_short[d]) continue;
      need[d] += rounded;
      if (need[d] > free_b[d]) {
        first_short[d] = &p;
        need_at_short[d] = need[d];
      }
    }
    for (int d = 0; d < n_dev; ++d)
      if (const WeightPlacement* p = first_short[size_t(d)])
        fail(p->tensor, ": out of device memory: the weights placed on CUDA device ", d, " need ", gib(all[size_t(d)]),
             " (", gib(need_at_short[size_t(d)]), " up to and including this tensor), the device has ",
             gib(free_b[size_t(d)]), " free of ", gib(total_b[size_t(d)]),
             "; compile a plan for this GPU's profile (it moves experts to host memory when they do not fit)");
  }

  DeviceWeights w;
  DeviceWeights::Impl& im = *w.impl_;
  std::unordered_set<std::string> seen;
  std::vector<const gguf::TensorInfo*> infos;
  std::vector<uint64_t> offsets;  // of each placed part within its tensor
  struct PackMapping {
    size_t mapping;  // index in im.vmm
    uint64_t bytes;
    int device;
    std::map<uint64_t, std::pair<uint64_t, std::string>> members;  // offset -> (end, tensor)
  };
  std::unordered_map<int64_t, PackMapping> packs;
  for (const WeightPlacement& p : placements) {
    const gguf::TensorInfo& t = file.require_tensor(p.tensor);
    if (!seen.insert(p.tensor).second) fail(p.tensor, ": placed twice");
    if (p.device < 0 || p.device >= n_dev)
      fail(p.tensor, ": placed on CUDA device ", p.device, ", expected 0..", n_dev - 1);
    if (opts.random_seed && !fill_supported(t.type))
      fail(p.tensor, ": dtype ", dtype_name(t.type), " cannot be filled with random weights");
    DeviceTensor d;
    d.name = t.name;
    d.type = t.type;
    d.ne = t.ne;
    d.bytes = placed_bytes(p, t);
    d.where = p.where;
    d.device = p.device;
    if (p.bytes) {  // a part: bytes [offset, offset + bytes), outer_count of the outermost dim
      int outer = 3;
      while (outer > 0 && t.ne[size_t(outer)] == 1) --outer;
      const uint64_t per = t.n_bytes / uint64_t(t.ne[size_t(outer)]);
      if (p.outer_count <= 0 || p.offset % per != 0 || p.bytes != per * uint64_t(p.outer_count) ||
          p.offset + p.bytes > t.n_bytes)
        fail(p.tensor, ": part of ", p.bytes, " bytes at offset ", p.offset, " (", p.outer_count,
             " of its outermost dim), expected whole entries of ", per, " bytes within its ", t.n_bytes);
      d.ne[size_t(outer)] = p.outer_count;
    }
    if (p.where == Placement::device && p.pack >= 0) {
      // A plan's packed chunk: one mapping for all its tensors, made when the first one
      // comes; each tensor (or a multi-GPU plan's part of one: a small expert tensor's
      // slice) at its offset, inside the chunk and 16-byte aligned (the kernels' vector
      // loads).
      if (p.pack_offset % 16 != 0 || p.pack_offset + d.bytes > p.pack_bytes)
        fail(p.tensor, ": bytes [", p.pack_offset, ", ", p.pack_offset + d.bytes, ") in packed chunk ", p.pack, " of ",
             p.pack_bytes, " bytes, expected a 16-byte aligned range inside it");
      auto [it, fresh] = packs.try_emplace(p.pack, PackMapping{im.vmm.size(), p.pack_bytes, p.device, {}});
      if (fresh) {
        im.vmm.push_back(VmmMapping::create(p.device, p.pack_bytes, "packed chunk " + std::to_string(p.pack)));
        im.device_bytes += im.vmm.back().mapped();
      } else if (it->second.bytes != p.pack_bytes || it->second.device != p.device) {
        fail(p.tensor, ": packed chunk ", p.pack, " of ", p.pack_bytes, " bytes on device ", p.device,
             ", expected the ", it->second.bytes, " bytes on device ", it->second.device, " its other tensors gave");
      }
      // Tensors of a pack must not overlap: the readers write them concurrently, so the
      // overlap's bytes would depend on timing.
      auto& members = it->second.members;
      const uint64_t end = p.pack_offset + d.bytes;
      auto next = members.lower_bound(p.pack_offset);
      const auto clash = [&](const std::string& other, uint64_t o0, uint64_t o1) {
        fail(p.tensor, ": bytes [", p.pack_offset, ", ", end, ") of packed chunk ", p.pack, " overlap ", other, "'s [",
             o0, ", ", o1, "); expected the tensors of a pack side by side");
      };
      if (next != members.end() && next->first < end) clash(next->second.second, next->first, next->second.first);
      if (next != members.begin() && std::prev(next)->second.first > p.pack_offset)
        clash(std::prev(next)->second.second, std::prev(next)->first, std::prev(next)->second.first);
      members.emplace(p.pack_offset, std::make_pair(end, p.tensor));
      d.ptr = static_cast<uint8_t*>(im.vmm[it->second.mapping].ptr()) + p.pack_offset;
    } else if (p.where == Placement::device) {
      im.vmm.push_back(VmmMapping::create(p.device, d.bytes, t.name));
      d.ptr = im.vmm.back().ptr();
      im.device_bytes += im.vmm.back().mapped();
    } else {
      im.host.push_back(PinnedHost::create(d.bytes, t.name));
      d.ptr = im.host.back().dev_ptr();
      im.host_bytes += d.bytes;
    }
    im.index[d.name] = im.tensors.size();
    im.tensors.push_back(std::move(d));
    infos.push_back(&t);
    offsets.push_back(p.offset);
  }

  const auto t0 = std::chrono::steady_clock::now();
  uint64_t total = 0;
  for (const DeviceTensor& d : im.tensors) total += d.bytes;
  if (opts.random_seed) {
    const int64_t range = expert_count(file);
    std::vector<cudaStream_t> streams(size_t(n_dev), nullptr);
    try {
      for (size_t i = 0; i < infos.size(); ++i) {
        const DeviceTensor& d = im.tensors[i];
        if (cudaSetDevice(d.device) != cudaSuccess) fail("cannot use CUDA device ", d.device);
        if (!streams[size_t(d.device)] && cudaStreamCreateWithFlags(&streams[size_t(d.device)], cudaStreamNonBlocking) != cudaSuccess)
          fail("cannot create a stream on CUDA device ", d.device);
        const RandomTensorFill r = random_fill_for(*infos[i], *opts.random_seed);
        // A part gets that part of the whole tensor's contents (counter-based fill).
        const int64_t elements = d.ne[0] * d.ne[1] * d.ne[2] * d.ne[3];
        const int64_t first = int64_t(offsets[i] / traits(d.type).bytes) * traits(d.type).block;
        fill_random(d.type, d.ptr, elements, {r.seed, r.scale, r.center, range, first}, streams[size_t(d.device)]);
      }
      for (int dev = 0; dev < n_dev; ++dev) {
        if (!streams[size_t(dev)]) continue;
        cudaSetDevice(dev);
        const cudaError_t e = cudaStreamSynchronize(streams[size_t(dev)]);
        if (e != cudaSuccess) fail("random weights on CUDA device ", dev, ": ", cudaGetErrorString(e));
      }
    } catch (...) {
      for (cudaStream_t s : streams)
        if (s) cudaStreamDestroy(s);
      throw;
    }
    for (cudaStream_t s : streams)
      if (s) cudaStreamDestroy(s);
    im.stats.readers = 0;
    if (opts.progress)
      opts.progress({total, total, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), true});
  } else {
    std::vector<ReadJob> jobs;
    for (size_t i = 0; i < infos.size(); ++i) {
      const gguf::TensorInfo& t = *infos[i];
      const DeviceTensor& d = im.tensors[i];
      ReadJob j;
      j.shard = t.shard;
      j.offset = t.file_offset + offsets[i];
      j.bytes = d.bytes;
      j.on_host = d.where == Placement::host;
      j.dst = d.ptr;  // host tensors: replaced by their host address below
      j.device = d.device;
      j.mapped = file.bytes(t).subspan(offsets[i], d.bytes);
      jobs.push_back(j);
    }
    // Host tensors are written through their host address, in placement order.
    size_t h = 0;
    for (size_t i = 0; i < jobs.size(); ++i)
      if (jobs[i].on_host) jobs[i].dst = im.host[h++].host();
    im.stats.direct_io = read_jobs(shard_paths(file), std::move(jobs), opts, im.stats.readers);
  }
  im.stats.bytes = total;
  im.stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return w;
}

}  // namespace fp::cuda
