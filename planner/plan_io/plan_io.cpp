// Plan files: serialisation with a checksum, hardened loading, and the model / device
// check the runtime does before it trusts a plan (see plan_io.h).
#include "planner/plan_io/plan_io.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ops/core/error.h"
#include "ops/registry/kernel_registry.h"
#include "planner/plan_io/fingerprint.h"
#include "planner/plan_io/sha256.h"

namespace fp {

namespace {

constexpr size_t kChecksumBytes = 32;

std::array<uint8_t, 32> checksum_of(std::vector<uint8_t> bytes, size_t at) {
  std::memset(bytes.data() + at, 0, kChecksumBytes);
  Sha256 h;
  h.update(bytes.data(), bytes.size());
  return h.finish();
}

// Where the checksum vector's bytes sit in a verified buffer.
size_t checksum_offset(const std::vector<uint8_t>& bytes, const plan::Plan* root) {
  const auto* v = root->checksum();
  if (!v || v->size() != kChecksumBytes) return SIZE_MAX;
  return static_cast<size_t>(v->Data() - bytes.data());
}

std::string hex(const uint8_t* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += d[p[i] >> 4];
    s += d[p[i] & 15];
  }
  return s;
}

// Every index a plan stores must point inside the table it indexes.
void check_references(const plan::Plan& p, const std::string& name) {
  auto bad = [&](auto&&... what) { fail(name, ": corrupt plan: ", what..., "; expected a plan written by flashplan compile"); };
  if (!p.provenance() || !p.provenance()->options() || !p.provenance()->planner_version()) bad("no provenance");
  if (!p.model() || !p.model()->config() || !p.model()->fingerprint()) bad("no model section");
  if (!p.device() || !p.device()->name()) bad("no device section");
  if (!p.memory()) bad("no memory section");
  if (!p.weights() || !p.chunks() || !p.buffers() || !p.phases() || !p.kernels() || !p.notes() || !p.kv())
    bad("a table is missing (weights, chunks, buffers, phases, kernels, notes or kv)");
  const size_t n_weights = p.weights()->size(), n_chunks = p.chunks()->size(), n_buffers = p.buffers()->size();
  const size_t n_kernels = p.kernels()->size(), n_notes = p.notes()->size();
  const auto* overrides = p.provenance()->options()->overrides();
  const size_t n_overrides = overrides ? overrides->size() : 0;
  if (n_notes == 0 || p.notes()->Get(0)->size() != 0) bad("notes[0] is not empty");
  for (size_t i = 0; i < n_kernels; ++i)
    if (!p.kernels()->Get(i)->id()) bad("kernel ", i, " has no id");
  for (size_t i = 0; i < n_weights; ++i) {
    const auto* w = p.weights()->Get(i);
    if (!w->name() || !w->shape()) bad("weight ", i, " has no name or shape");
    if (w->chunk() >= n_chunks) bad("weight ", w->name()->str(), " in chunk ", w->chunk(), " of ", n_chunks);
    const uint32_t gpus = p.device()->gpus();
    if (w->slices())
      for (const auto* sl : *w->slices())
        if (sl->chunk() >= n_chunks || sl->device() < 0 || uint32_t(sl->device()) >= std::max(gpus, 1u))
          bad("weight ", w->name()->str(), ": slice on device ", sl->device(), " in chunk ", sl->chunk(), " (", gpus,
              " devices, ", n_chunks, " chunks)");
  }
  for (size_t i = 0; i < n_buffers; ++i)
    if (p.buffers()->Get(i)->id() != i || !p.buffers()->Get(i)->name()) bad("buffer ", i, " has id ", p.buffers()->Get(i)->id());
  for (const auto* ph : *p.phases()) {
    if (!ph->name() || !ph->nodes() || !ph->segments() || ph->nodes()->size() == 0) bad("a phase without name, nodes or segments");
    const std::string pn = ph->name()->str();
    const size_t n_nodes = ph->nodes()->size();
    for (size_t i = 0; i < n_nodes; ++i) {
      const auto* n = ph->nodes()->Get(i);
      // Empty lists are stored as absent fields (FlatBuffers object API); read them as empty.
      if (!n->name() || !n->dims() || !n->launch()) bad(pn, " node ", i, " lacks its name, dims or launch");
      if (n->kernel() >= n_kernels) bad(pn, " node ", n->name()->str(), ": kernel ", n->kernel(), " of ", n_kernels);
      if (n->device() < -1 || n->device() >= int(std::max(p.device()->gpus(), 1u)))
        bad(pn, " node ", n->name()->str(), ": device ", n->device(), " of ", p.device()->gpus());
      if (n->weights())
        for (uint32_t w : *n->weights())
          if (w >= n_weights) bad(pn, " node ", n->name()->str(), ": weight ", w, " of ", n_weights);
      for (const auto* list : {n->inputs(), n->outputs()})
        if (list)
          for (uint32_t b : *list)
          if (b >= n_buffers) bad(pn, " node ", n->name()->str(), ": buffer ", b, " of ", n_buffers);
      if (n->candidates())
        for (const auto* c : *n->candidates())
          if (c->kernel() >= n_kernels || c->note() >= n_notes) bad(pn, " node ", n->name()->str(), ": bad candidate");
      if (n->override_index() < -1 || n->override_index() >= static_cast<int>(n_overrides))
        bad(pn, " node ", n->name()->str(), ": override ", n->override_index(), " of ", n_overrides);
    }
    // Segments cover the nodes in order, without gaps or overlaps.
    uint64_t next = 0;
    for (const auto* s : *ph->segments()) {
      if (s->first() != next || s->count() == 0) bad(pn, ": segment at node ", s->first(), ", expected ", next);
      next += s->count();
    }
    if (next != n_nodes) bad(pn, ": segments cover ", next, " of ", n_nodes, " nodes");
  }
}

// overlap_prev (programmatic dependent launch) only on nodes whose kernel, in this build,
// waits for the previous kernel before it reads its inputs, on the plan's device: a kernel
// that does not would read inputs still being written.
void check_overlap(const plan::Plan& p, const std::string& name) {
  const bool cuda = p.device()->backend() == plan::Backend::cuda;
  const uint32_t cc = p.device()->cc_major() * 10 + p.device()->cc_minor();
  for (const auto* ph : *p.phases())
    for (const auto* n : *ph->nodes()) {
      if (!n->overlap_prev()) continue;
      const std::string id = p.kernels()->Get(n->kernel())->id()->str();
      const KernelInfo* k = find_kernel(id);
      const std::string why = !k     ? str(id, " is not a kernel of this build")
                              : !cuda ? std::string("the plan is for a CPU device")
                                      : overlap_rejection(*k, cc);
      if (why.empty()) continue;
      fail(name, ": phase ", ph->name()->str(), " node ", n->name()->str(), " runs ", id,
           " with overlap_prev (programmatic dependent launch), but ", why,
           "; expected overlap_prev only on nodes whose kernel waits for the previous one (its registry entry's "
           "overlap_min_cc: every CUDA kernel but the cuBLAS GEMM and the collectives, on compute capability 9.0+): "
           "recompile the plan");
    }
}

}  // namespace

std::vector<uint8_t> serialize_plan(const plan::PlanT& p) {
  plan::PlanT copy = p;
  copy.checksum.assign(kChecksumBytes, 0);
  flatbuffers::FlatBufferBuilder fbb(1 << 20);
  plan::FinishPlanBuffer(fbb, plan::Plan::Pack(fbb, &copy));
  std::vector<uint8_t> bytes(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  const size_t at = checksum_offset(bytes, plan::GetPlan(bytes.data()));
  const auto sum = checksum_of(bytes, at);
  std::memcpy(bytes.data() + at, sum.data(), kChecksumBytes);
  return bytes;
}

std::string LoadedPlan::kernel_id(const plan::Node& n) const { return root->kernels()->Get(n.kernel())->id()->str(); }

LoadedPlan verify_plan(std::vector<uint8_t> bytes, const std::string& name) {
  if (bytes.size() < 16)
    fail(name, ": ", bytes.size(), " bytes; expected a flashplan plan (truncated or not a plan)");
  if (!plan::PlanBufferHasIdentifier(bytes.data())) {
    char id[5] = {0};
    std::memcpy(id, bytes.data() + 4, 4);
    for (char& c : id)
      if (c && (c < 32 || c > 126)) c = '?';
    fail(name, ": file identifier '", id, "'; expected 'FPLN' (a plan written by flashplan compile)");
  }
  flatbuffers::Verifier::Options vo;
  vo.max_tables = 100'000'000;
  vo.max_depth = 64;
  flatbuffers::Verifier v(bytes.data(), bytes.size(), vo);
  if (!plan::VerifyPlanBuffer(v))
    fail(name, ": corrupt plan: FlatBuffers verification failed (truncated or damaged file); expected a plan written by "
               "flashplan compile");
  const plan::Plan* root = plan::GetPlan(bytes.data());
  const size_t at = checksum_offset(bytes, root);
  if (at == SIZE_MAX) fail(name, ": corrupt plan: no checksum; expected a 32-byte SHA-256 checksum field");
  const auto want = checksum_of(bytes, at);
  if (std::memcmp(want.data(), bytes.data() + at, kChecksumBytes) != 0)
    fail(name, ": corrupt plan: checksum ", hex(bytes.data() + at, 8), "..., contents hash to ", hex(want.data(), 8),
         "...; the file was modified or damaged after compile");
  if (!root->provenance()) fail(name, ": corrupt plan: no provenance; expected a plan written by flashplan compile");
  if (root->provenance()->format_version() != kPlanFormatVersion)
    fail(name, ": plan format version ", root->provenance()->format_version(), "; this flashplan reads version ",
         kPlanFormatVersion, " (recompile the plan with this flashplan)");
  check_references(*root, name);
  check_overlap(*root, name);
  LoadedPlan lp;
  lp.path = name;
  lp.bytes = std::move(bytes);
  lp.root = plan::GetPlan(lp.bytes.data());
  return lp;
}

LoadedPlan load_plan(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) fail(path, ": cannot read plan: ", ec.message());
  if (size > kMaxPlanBytes) fail(path, ": ", size, " bytes; expected a plan under ", kMaxPlanBytes, " bytes");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open plan");
  std::vector<uint8_t> bytes(size);
  if (size && !in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size)))
    fail(path, ": short read of plan");
  return verify_plan(std::move(bytes), path);
}

bool looks_like_plan(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  uint8_t head[8] = {0};
  if (!in.read(reinterpret_cast<char*>(head), 8)) return false;
  return std::memcmp(head + 4, "FPLN", 4) == 0;
}

void write_plan_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) fail(path, ": cannot write plan (", tmp, ")");
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out) fail(path, ": write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    fail(path, ": cannot move plan into place: ", ec.message());
  }
}

void check_plan_matches(const LoadedPlan& p, const gguf::File& model, const std::string& device_name,
                        uint32_t device_cc, const gguf::File* mtp) {
  const std::string want = p->model()->fingerprint()->str();
  const std::string got = gguf_fingerprint(model);
  if (want != got)
    fail(p.path, ": compiled for model ", p->model()->file() ? p->model()->file()->str() : "?", " (fingerprint ",
         short_fingerprint(want), "), given ", model.path(), " (fingerprint ", short_fingerprint(got),
         "): another file, dtype mix or tokenizer; recompile the plan for this model");
  const std::string want_mtp = p->model()->mtp_fingerprint() ? p->model()->mtp_fingerprint()->str() : "";
  const std::string got_mtp = mtp ? gguf_fingerprint(*mtp) : "";
  if (want_mtp != got_mtp)
    fail(p.path, ": compiled with MTP file fingerprint ", want_mtp.empty() ? "(none)" : short_fingerprint(want_mtp),
         ", given ", mtp ? mtp->path() + " (" + short_fingerprint(got_mtp) + ")" : std::string("no MTP file"),
         "; recompile the plan with the same --mtp file");
  const std::string dev = p->device()->name()->str();
  if (dev != device_name)
    fail(p.path, ": compiled for device ", dev, ", this device is ", device_name,
         "; recompile with this device's profile");
  const uint32_t cc = p->device()->cc_major() * 10 + p->device()->cc_minor();
  if (device_cc != 0 && cc != device_cc)
    fail(p.path, ": compiled for compute capability ", cc / 10, ".", cc % 10, " (", dev, "), this device has ",
         device_cc / 10, ".", device_cc % 10, "; recompile with this device's profile");
}

}  // namespace fp
