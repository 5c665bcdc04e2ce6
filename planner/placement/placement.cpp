// Weight placement (see placement.h): own chunks for large tensors, packed chunks for
// small ones, host-mapped chunks for offloaded ones. Deterministic: tensors are walked
// in file order and chunk ids are assigned in that order.
#include "planner/placement/placement.h"

#include <algorithm>
#include <map>

#include "ops/core/error.h"

namespace fp {

const char* placement_name(Placement p) {
  switch (p) {
    case Placement::device_chunk: return "device_chunk";
    case Placement::device_packed: return "device_packed";
    case Placement::host_mapped: return "host_mapped";
  }
  return "?";
}

namespace {
uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
}  // namespace

std::vector<ModelTensor> model_tensors(const Model& m) {
  std::vector<ModelTensor> out;
  for (const auto& t : m.file().tensors()) out.push_back({&t, 0});
  if (m.mtp_file())
    for (const auto& t : m.mtp_file()->tensors()) out.push_back({&t, 1});
  return out;
}

namespace {

// Multi-GPU placement: each tensor's slices in device order, own chunks for large
// slices, one packed chunk at a time per device for the small ones.
WeightPlacement place_on_devices(const std::vector<ModelTensor>& tensors, const DeviceProfile& p, uint32_t n,
                                 const std::vector<SliceAxis>& axis) {
  const uint64_t gran = std::max<uint64_t>(p.vmm_granularity, 1);
  const uint64_t base_align = std::max(kChunkBaseAlign, gran);
  WeightPlacement w;
  w.slots.resize(tensors.size());
  w.per_device.assign(n, 0);
  std::vector<int64_t> packed(n, -1);
  std::vector<uint64_t> used(n, 0);
  auto close_packed = [&](uint32_t d) {
    if (packed[d] < 0) return;
    Chunk& c = w.chunks[packed[d]];
    c.bytes = round_up(used[d], gran);
    w.device_bytes += c.bytes;
    w.per_device[d] += c.bytes;
    packed[d] = -1;
    used[d] = 0;
  };
  for (size_t i = 0; i < tensors.size(); ++i) {
    const gguf::TensorInfo& t = *tensors[i].info;
    const SliceAxis a = axis.empty() ? SliceAxis::whole : axis[i];
    const uint32_t dims = std::max<uint32_t>(t.n_dims, 1);
    const uint64_t extent = a == SliceAxis::outer ? t.ne[dims - 1] : a == SliceAxis::columns ? t.ne[0] : 1;
    WeightSlot& s = w.slots[i];
    s.device = -1;
    for (uint32_t d = 0; d < n; ++d) {
      SliceSlot sl;
      sl.device = static_cast<int32_t>(d);
      sl.axis = a;
      if (a == SliceAxis::whole) {
        sl.count = dims ? t.ne[dims - 1] : 1;
        sl.bytes = t.n_bytes;
      } else {
        sl.first = uint64_t(d) * extent / n;
        sl.count = uint64_t(d + 1) * extent / n - sl.first;
        sl.bytes = t.n_bytes / extent * sl.count;  // whole rows / blocks (checked by the op graph)
      }
      if (sl.bytes >= kOwnChunkMin) {
        Chunk c{static_cast<uint32_t>(w.chunks.size()), Placement::device_chunk, sl.device, round_up(sl.bytes, gran),
                base_align};
        sl.placement = Placement::device_chunk;
        sl.chunk = c.id;
        w.device_bytes += c.bytes;
        w.per_device[d] += c.bytes;
        w.chunks.push_back(c);
      } else {
        const uint64_t at = round_up(used[d], kPackedAlign);
        if (packed[d] < 0 || at + sl.bytes > kPackedChunkMax) {
          close_packed(d);
          packed[d] = static_cast<int64_t>(w.chunks.size());
          w.chunks.push_back({static_cast<uint32_t>(packed[d]), Placement::device_packed, sl.device, 0, base_align});
        }
        sl.placement = Placement::device_packed;
        sl.chunk = static_cast<uint32_t>(packed[d]);
        sl.offset = round_up(used[d], kPackedAlign);
        used[d] = sl.offset + sl.bytes;
      }
      s.slices.push_back(sl);
    }
    s.placement = s.slices[0].placement;
    s.chunk = s.slices[0].chunk;
    s.offset = s.slices[0].offset;
  }
  for (uint32_t d = 0; d < n; ++d) close_packed(d);
  return w;
}

}  // namespace

WeightPlacement place_weights(const std::vector<ModelTensor>& tensors, const std::vector<std::string>& host_reason,
                              const DeviceProfile& p, uint32_t devices, const std::vector<SliceAxis>& axis) {
  if (host_reason.size() != tensors.size()) fail("place_weights: ", host_reason.size(), " reasons for ", tensors.size(), " tensors");
  if (!axis.empty() && axis.size() != tensors.size()) fail("place_weights: ", axis.size(), " axes for ", tensors.size(), " tensors");
  if (devices > 1) {
    for (const auto& r : host_reason)
      if (!r.empty()) fail("place_weights: host-mapped weights in a plan for ", devices, " devices");
    return place_on_devices(tensors, p, devices, axis);
  }
  const bool cpu = p.backend == Backend::Cpu;
  const uint64_t gran = cpu ? kHostPage : std::max<uint64_t>(p.vmm_granularity, 1);
  const uint64_t base_align = cpu ? kHostPage : std::max(kChunkBaseAlign, gran);

  WeightPlacement w;
  w.slots.resize(tensors.size());
  int64_t packed = -1;  // chunk currently being filled with small tensors
  uint64_t packed_used = 0;

  auto close_packed = [&] {
    if (packed < 0) return;
    w.chunks[packed].bytes = round_up(packed_used, gran);
    w.device_bytes += w.chunks[packed].bytes;
    packed = -1;
    packed_used = 0;
  };

  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t n = tensors[i].info->n_bytes;
    WeightSlot& s = w.slots[i];
    if (!host_reason[i].empty()) {
      Chunk c{static_cast<uint32_t>(w.chunks.size()), Placement::host_mapped, 0, round_up(n, kHostPage), kHostPage};
      s = {Placement::host_mapped, 0, c.id, 0, host_reason[i], {}};
      w.host_bytes += c.bytes;
      ++w.host_tensors;
      w.chunks.push_back(c);
    } else if (n >= kOwnChunkMin || cpu) {
      // CPU plans map each tensor as it sits in the file; one "chunk" per tensor.
      Chunk c{static_cast<uint32_t>(w.chunks.size()), Placement::device_chunk, 0, round_up(n, gran), base_align};
      s = {Placement::device_chunk, 0, c.id, 0, {}, {}};
      w.device_bytes += c.bytes;
      w.chunks.push_back(c);
    } else {
      const uint64_t at = round_up(packed_used, kPackedAlign);
      if (packed < 0 || at + n > kPackedChunkMax) {
        close_packed();
        packed = static_cast<int64_t>(w.chunks.size());
        w.chunks.push_back({static_cast<uint32_t>(packed), Placement::device_packed, 0, 0, base_align});
      }
      const uint64_t off = round_up(packed_used, kPackedAlign);
      s = {Placement::device_packed, 0, static_cast<uint32_t>(packed), off, {}, {}};
      packed_used = off + n;
    }
  }
  close_packed();
  w.per_device = {w.device_bytes};
  return w;
}

std::vector<OffloadUnit> offload_units(const Model& m, const std::vector<ModelTensor>& tensors) {
  std::map<const gguf::TensorInfo*, size_t> index;
  for (size_t i = 0; i < tensors.size(); ++i) index[tensors[i].info] = i;
  std::vector<OffloadUnit> out;
  const ModelConfig& c = m.config();
  for (uint32_t l = c.n_layer; l-- > 0;) {
    const LayerTensors& L = m.layer(l);
    OffloadUnit u;
    u.layer = l;
    for (const TensorRef* t : {&L.ffn_gate_exps, &L.ffn_up_exps, &L.ffn_down_exps}) {
      if (!*t) continue;
      u.tensors.push_back(index.at(t->info));
      u.bytes += t->info->n_bytes;
    }
    if (!u.tensors.empty()) out.push_back(std::move(u));
  }
  return out;
}

}  // namespace fp
