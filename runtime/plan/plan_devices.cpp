// plan_devices (see plan_devices.h).
#include "runtime/plan/plan_devices.h"

#include <algorithm>

#include "ops/core/error.h"

namespace fp {
namespace {

// Routed-expert tensors: blk.N.ffn_{gate,up,down}_exps.weight.
bool routed_experts(const std::string& name) { return name.find("_exps.") != std::string::npos; }

// Takes chunk `chunk` into l when the plan packed the tensor there (verify_plan has
// checked the chunk index).
void set_pack(const LoadedPlan& p, uint32_t chunk, uint64_t offset, DeviceTensorLoad& l) {
  const plan::Chunk* c = p->chunks()->Get(chunk);
  if (c->placement() != plan::Placement::device_packed) return;
  l.pack = int64_t(chunk);
  l.pack_bytes = c->bytes();
  l.pack_offset = offset;
}

// Tensors sharing a packed chunk must not overlap: the loader writes each at its offset,
// so an overlap (a damaged or hand-edited plan) would silently corrupt a neighbour.
void check_packs_disjoint(const LoadedPlan& p, uint32_t device, const PlanDevice& dev) {
  std::vector<const DeviceTensorLoad*> packed;
  for (const DeviceTensorLoad& l : dev.tensors)
    if (l.pack >= 0) packed.push_back(&l);
  std::sort(packed.begin(), packed.end(), [](const DeviceTensorLoad* a, const DeviceTensorLoad* b) {
    return a->pack != b->pack ? a->pack < b->pack : a->pack_offset < b->pack_offset;
  });
  for (size_t i = 1; i < packed.size(); ++i) {
    const DeviceTensorLoad& a = *packed[i - 1];
    const DeviceTensorLoad& b = *packed[i];
    if (a.pack == b.pack && a.pack_offset + a.bytes > b.pack_offset)
      fail(p.path, ": device ", device, ": ", a.tensor, " at bytes [", a.pack_offset, ", ", a.pack_offset + a.bytes,
           ") of packed chunk ", a.pack, " overlaps ", b.tensor, " at ", b.pack_offset,
           "; expected disjoint ranges (the plan is damaged or was edited)");
  }
}

}  // namespace

std::vector<PlanDevice> plan_devices(const LoadedPlan& p, const gguf::File& model) {
  const uint32_t n = std::max<uint32_t>(p->device()->gpus(), 1);
  const int64_t n_expert = int64_t(p->model()->config()->n_expert());
  std::vector<PlanDevice> out(n);
  std::vector<bool> range_set(n, false);
  for (const plan::Weight* w : *p->weights()) {
    if (w->file() != 0) continue;
    const std::string name = w->name()->str();
    const gguf::TensorInfo& t = model.require_tensor(name);
    const bool sliced = w->slices() && w->slices()->size() > 0;
    if (!sliced) {
      if (n > 1) fail(p.path, ": weight ", name, " has no per-device slices in a plan for ", n, " GPUs");
      DeviceTensorLoad l;
      l.tensor = name;
      l.host = w->placement() == plan::Placement::host_mapped;
      l.bytes = t.n_bytes;
      if (!l.host) set_pack(p, w->chunk(), w->chunk_offset(), l);
      out[0].tensors.push_back(std::move(l));
      if (routed_experts(name)) out[0].expert_count = n_expert;
      continue;
    }
    std::vector<bool> held(n, false);
    for (const plan::WeightSlice* s : *w->slices()) {
      const std::string where = str(p.path, ": weight ", name, " slice for device ", s->device());
      if (s->device() < 0 || uint32_t(s->device()) >= n) fail(where, ": device outside 0..", n - 1);
      const uint32_t d = uint32_t(s->device());
      if (held[d]) fail(where, ": a second slice for the same device");
      held[d] = true;
      DeviceTensorLoad l;
      l.tensor = name;
      if (p->chunks()->Get(s->chunk())->placement() == plan::Placement::host_mapped)
        fail(where, ": in host memory; multi-GPU plans keep every weight on the devices");
      if (s->axis() == plan::SliceAxis::columns)
        fail(where, ": a column slice (tensor-split product); this build's CUDA executor runs attention, the shared "
             "expert and the head replicated, so it loads whole tensors and outer (expert) slices only");
      if (s->axis() == plan::SliceAxis::whole) {
        l.bytes = t.n_bytes;
      } else {  // outer: [first, first + count) of the outermost dimension
        int dims = 4;
        while (dims > 1 && t.ne[size_t(dims - 1)] == 1) --dims;
        const uint64_t extent = uint64_t(t.ne[size_t(dims - 1)]);
        if (s->count() == 0 || s->first() + s->count() > extent)
          fail(where, ": outer slice [", s->first(), ", ", s->first() + s->count(), "), expected within [0, ", extent,
               ")");
        const uint64_t per = t.n_bytes / extent;
        if (per * s->count() != s->bytes())
          fail(where, ": ", s->bytes(), " bytes, expected ", per * s->count(), " (", s->count(), " x ", per, ")");
        l.offset = per * s->first();
        l.bytes = s->bytes();
        l.outer_first = int64_t(s->first());
        l.outer_count = int64_t(s->count());
      }
      set_pack(p, s->chunk(), s->chunk_offset(), l);
      if (routed_experts(name)) {
        PlanDevice& dev = out[d];
        const int64_t first = l.outer_count ? l.outer_first : 0, count = l.outer_count ? l.outer_count : n_expert;
        if (!range_set[d]) {
          dev.expert_first = first;
          dev.expert_count = count;
          range_set[d] = true;
        } else if (dev.expert_first != first || dev.expert_count != count) {
          fail(where, ": experts [", first, ", ", first + count, "), expected [", dev.expert_first, ", ",
               dev.expert_first + dev.expert_count, ") as in this device's other routed-expert tensors");
        }
      }
      out[d].tensors.push_back(std::move(l));
    }
    for (uint32_t d = 0; d < n; ++d)
      if (!held[d]) fail(p.path, ": weight ", name, " has no slice for device ", d, " (every device runs every node)");
  }
  for (uint32_t d = 0; d < n; ++d) check_packs_disjoint(p, d, out[d]);
  return out;
}

}  // namespace fp
