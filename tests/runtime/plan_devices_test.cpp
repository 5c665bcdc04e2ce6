// The CPU-checkable half of running a plan on several GPUs (issue 8; runtime/plan/
// plan_devices.h, runtime/cuda/product_kernels.cpp, planner/memory/cuda_buffers.h):
//   - what each GPU of the built-in tiny model's 2-GPU plan loads: every tensor whole on
//     both, the routed experts split [0, 4) / [4, 8) as byte ranges of the GGUF tensor;
//     a one-GPU plan is one device holding everything whole;
//   - the CUDA product table takes the 2-GPU plan (moe, its all-reduce and combine), and
//     its node list is what the executor walks: moe, all_reduce, moe_combine per layer;
//   - a plan whose cost model split attention, the shared expert and the head (the full
//     model on 2x H100 with --inexact-parallel) is refused, naming the node / slice;
//     the default (exact parallelism) plan is accepted;
//   - a 2-GPU plan folded onto one GPU (tests/support/fold_plan.h, how the GPU suite runs
//     the multi-GPU step on one GPU) passes every check and loads every expert whole;
//   - the buffer table of an expert-split executor holds the slot outputs and local ids.
#include <doctest/doctest.h>

#include <map>

#include "ops/core/error.h"
#include "planner/memory/cuda_buffers.h"
#include "planner/model/builtin.h"
#include "runtime/cuda/device_weights.h"
#include "runtime/cuda/executor.h"
#include "runtime/plan/plan_binding.h"
#include "runtime/plan/plan_devices.h"
#include "planner/profile/tune_targets.h"
#include "tests/planner/plan_test_util.h"
#include "tests/support/fold_plan.h"

using namespace fp;
using fp::test::error_of;

namespace {

const Model& builtin() {
  static const Model m = Model::open(builtin_model_path());
  return m;
}

LoadedPlan plan_for(const Model& m, const std::string& profile, bool exact) {
  CompileOptions o;
  o.numerics = Numerics::plain;
  o.max_context = 1024;
  o.exact_parallel = exact;
  return verify_plan(test::compile_bytes(m, test::shipped_profile(profile), o), profile + ".fplan");
}

}  // namespace

TEST_CASE("plan devices: the tiny model on 2 GPUs holds every tensor once per device, experts split by range") {
  const Model& m = builtin();
  const LoadedPlan lp = plan_for(m, "2x-h100-sxm-80gb", true);
  const std::vector<PlanDevice> devs = plan_devices(lp, m.file());
  REQUIRE(devs.size() == 2);
  const int64_t E = int64_t(m.config().n_expert);
  std::map<std::string, uint64_t> split_bytes;
  for (int d = 0; d < 2; ++d) {
    CAPTURE(d);
    const PlanDevice& dev = devs[size_t(d)];
    CHECK(dev.expert_first == d * E / 2);
    CHECK(dev.expert_count == E / 2);
    CHECK(dev.tensors.size() == m.file().tensors().size());
    for (const DeviceTensorLoad& t : dev.tensors) {
      CAPTURE(t.tensor);
      const gguf::TensorInfo& info = m.file().require_tensor(t.tensor);
      CHECK(!t.host);
      if (t.tensor.find("_exps.") == std::string::npos) {
        CHECK(t.outer_count == 0);
        CHECK(t.offset == 0);
        CHECK(t.bytes == info.n_bytes);
        continue;
      }
      CHECK(t.outer_first == dev.expert_first);
      CHECK(t.outer_count == dev.expert_count);
      CHECK(t.offset == info.n_bytes / uint64_t(E) * uint64_t(dev.expert_first));
      CHECK(t.offset + t.bytes <= info.n_bytes);
      split_bytes[t.tensor] += t.bytes;
    }
  }
  CHECK(split_bytes.size() == 3 * (m.config().n_layer + (m.mtp_available() ? 1 : 0)));  // the in-file MTP layer's too
  for (const auto& [name, bytes] : split_bytes) CHECK_MESSAGE(bytes == m.file().require_tensor(name).n_bytes, name);

  const LoadedPlan one = plan_for(m, "h100-sxm-80gb", false);
  const std::vector<PlanDevice> d1 = plan_devices(one, m.file());
  REQUIRE(d1.size() == 1);
  CHECK(d1[0].expert_first == 0);
  CHECK(d1[0].expert_count == E);
  CHECK(d1[0].tensors.size() == m.file().tensors().size());
  for (const DeviceTensorLoad& t : d1[0].tensors) CHECK(t.outer_count == 0);
}

namespace {

// Device bytes a runtime maps for `dev`: each packed chunk once, every other tensor in its
// own mapping rounded to the granularity; checks each packed tensor lies inside its chunk.
uint64_t mapped_bytes(const PlanDevice& dev, uint64_t gran, size_t* packed_tensors) {
  std::map<int64_t, uint64_t> packs;
  uint64_t own = 0;
  for (const DeviceTensorLoad& t : dev.tensors) {
    if (t.host) continue;
    if (t.pack < 0) {
      own += (t.bytes + gran - 1) / gran * gran;
      continue;
    }
    ++*packed_tensors;
    CHECK_MESSAGE(t.pack_offset % 16 == 0, t.tensor);
    CHECK_MESSAGE(t.pack_offset + t.bytes <= t.pack_bytes, t.tensor);
    const auto [it, fresh] = packs.emplace(t.pack, t.pack_bytes);
    if (!fresh) CHECK_MESSAGE(it->second == t.pack_bytes, t.tensor);
  }
  for (const auto& [id, bytes] : packs) own += bytes;
  return own;
}

}  // namespace

TEST_CASE("plan devices: small tensors load into the plan's packed chunks, so a device maps the bytes the plan counted") {
  const Model& m = builtin();
  for (const char* profile : {"h100-sxm-80gb", "2x-h100-sxm-80gb"}) {
    CAPTURE(profile);
    const LoadedPlan lp = plan_for(m, profile, true);
    const std::vector<PlanDevice> devs = plan_devices(lp, m.file());
    const uint64_t gran = lp->device()->vmm_granularity();
    REQUIRE(gran > 0);
    for (size_t d = 0; d < devs.size(); ++d) {
      CAPTURE(d);
      size_t packed = 0;
      const uint64_t mapped = mapped_bytes(devs[d], gran, &packed);
      CHECK(packed > 0);  // the tiny model's norms and small projections
      uint64_t planned = 0;
      for (const plan::Chunk* c : *lp->chunks())
        if (c->device() == int32_t(d) && c->placement() != plan::Placement::host_mapped) planned += c->bytes();
      CHECK(mapped == planned);
      // The loader's placements carry the same: packs, slices, host placement, the device.
      const auto pl = cuda::weight_placements(devs[d], int(d));
      REQUIRE(pl.size() == devs[d].tensors.size());
      for (size_t i = 0; i < pl.size(); ++i) {
        const DeviceTensorLoad& t = devs[d].tensors[i];
        CAPTURE(t.tensor);
        CHECK(pl[i].tensor == t.tensor);
        CHECK(pl[i].device == int(d));
        CHECK((pl[i].where == cuda::Placement::host) == t.host);
        CHECK(pl[i].pack == t.pack);
        CHECK(pl[i].pack_bytes == t.pack_bytes);
        CHECK(pl[i].pack_offset == t.pack_offset);
        CHECK(pl[i].outer_count == t.outer_count);
        CHECK(pl[i].bytes == (t.outer_count > 0 ? t.bytes : 0));
      }
    }
  }
}

TEST_CASE("plan devices: the CUDA product table takes the 2-GPU plan; every moe is followed by its all-reduce and combine") {
  const Model& m = builtin();
  const LoadedPlan lp = plan_for(m, "2x-h100-sxm-80gb", false);  // the cost model keeps the tiny model replicated
  REQUIRE(lp->parallelism());
  CHECK(lp->parallelism()->attention() == plan::Parallel::replicated);
  plan_op_graph(lp, m);  // the plan's nodes are this build's graph with the plan's split
  const cuda::ProductKernels pk = cuda::product_kernels(lp);
  for (const auto& ph : pk.phases) {
    CAPTURE(ph.name);
    uint32_t moes = 0;
    for (size_t i = 0; i < ph.nodes.size(); ++i) {
      if (ph.nodes[i].op != OpKind::moe) continue;
      ++moes;
      REQUIRE(i + 2 < ph.nodes.size());
      CHECK(ph.nodes[i + 1].op == OpKind::all_reduce);
      CHECK(ph.nodes[i + 2].op == OpKind::moe_combine);
      CHECK(ph.walk_difference(uint32_t(i + 1), OpKind::all_reduce, ph.nodes[i].layer, "") == "");
      CHECK(ph.walk_difference(uint32_t(i + 2), OpKind::moe, ph.nodes[i].layer, "").find("the plan runs moe_combine") !=
            std::string::npos);
    }
    CHECK(moes == m.config().n_layer);
  }
}

TEST_CASE("plan devices: tensor-split plans are refused naming the node and the slice; exact-parallel plans are not") {
  const Model& full = test::full_model();
  const LoadedPlan split = plan_for(full, "2x-h100-sxm-80gb", false);
  REQUIRE(split->parallelism());
  REQUIRE(split->parallelism()->attention() == plan::Parallel::tensor_split);
  const std::string e = error_of([&] { cuda::product_kernels(split); });
  CHECK(e.find("attn_q_b in phase") != std::string::npos);
  CHECK(e.find("is tensor_split: the CUDA executor runs attention, the shared expert and the head replicated") !=
        std::string::npos);
  CHECK(e.find("(the plan was compiled with --inexact-parallel; recompile without it)") != std::string::npos);
  const std::string s = error_of([&] { plan_devices(split, full.file()); });
  CHECK(s.find("a column slice (tensor-split product)") != std::string::npos);

  const LoadedPlan exact = plan_for(full, "2x-h100-sxm-80gb", true);
  CHECK(exact->provenance()->options()->exact_parallel());
  CHECK(exact->parallelism()->attention() == plan::Parallel::replicated);
  CHECK(exact->parallelism()->shared_expert() == plan::Parallel::replicated);
  CHECK(exact->parallelism()->head() == plan::Parallel::replicated);
  cuda::product_kernels(exact);
  const std::vector<PlanDevice> devs = plan_devices(exact, full.file());
  REQUIRE(devs.size() == 2);
  CHECK(devs[1].expert_first == int64_t(full.config().n_expert) / 2);
}

TEST_CASE("plan devices: a 2-GPU plan folded onto one GPU (the GPU tests' way to run the multi-GPU step on one)") {
  const Model& m = builtin();
  const LoadedPlan two = plan_for(m, "2x-h100-sxm-80gb", true);
  const auto folded = test::fold_onto_one_gpu(two);
  CHECK((*folded)->device()->gpus() == 1);
  GpuIdentity h100{"NVIDIA H100 80GB HBM3", 9, 0, 132, 85045231616ull};
  check_plan_for_gpus(*folded, m.file(), m.mtp_file(), {h100});
  plan_op_graph(*folded, m);  // still the 2-GPU node lists (the plan's parallelism is read back)
  const cuda::ProductKernels pk = cuda::product_kernels(*folded);
  bool reduce = false;
  for (const auto& n : pk.phases[0].nodes) reduce |= n.op == OpKind::all_reduce;
  CHECK(reduce);
  const std::vector<PlanDevice> devs = plan_devices(*folded, m.file());
  REQUIRE(devs.size() == 1);
  CHECK(devs[0].expert_first == 0);
  CHECK(devs[0].expert_count == int64_t(m.config().n_expert));
  for (const DeviceTensorLoad& t : devs[0].tensors) {
    CAPTURE(t.tensor);
    CHECK(t.offset == 0);
    CHECK(t.bytes == m.file().require_tensor(t.tensor).n_bytes);
    if (t.tensor.find("_exps.") != std::string::npos) CHECK(t.pack < 0);  // widened: out of its pack
  }
}

TEST_CASE("plan devices: tensors overlapping in a packed chunk (a damaged or edited plan) are refused, naming both") {
  const Model& m = builtin();
  const LoadedPlan lp = plan_for(m, "h100-sxm-80gb", false);
  std::unique_ptr<plan::PlanT> t(lp.root->UnPack());
  // Two weights of the same packed chunk: the second moved onto the first's bytes.
  plan::WeightT* first = nullptr;
  plan::WeightT* second = nullptr;
  for (auto& w : t->weights) {
    if (t->chunks[w->chunk]->placement != plan::Placement::device_packed) continue;
    if (!first) first = w.get();
    else if (w->chunk == first->chunk) {
      second = w.get();
      break;
    }
  }
  REQUIRE(first);
  REQUIRE(second);
  second->chunk_offset = first->chunk_offset;
  const LoadedPlan bad = verify_plan(serialize_plan(*t), "edited.fplan");
  const std::string e = error_of([&] { (void)plan_devices(bad, m.file()); });
  CAPTURE(e);
  CHECK(e.find("edited.fplan: device 0: ") != std::string::npos);
  CHECK(e.find("overlaps") != std::string::npos);
  CHECK(e.find(first->name) != std::string::npos);
  CHECK(e.find(second->name) != std::string::npos);
}

TEST_CASE("cuda buffers: an expert-split executor holds every slot's output and its local expert ids") {
  const ModelConfig& c = builtin().config();
  CudaBufferOptions o;
  o.max_step = 16;
  o.max_context = 256;
  const CudaBuffers one = cuda_buffers(c, o);
  o.expert_split = true;
  const CudaBuffers split = cuda_buffers(c, o);
  CHECK(one.moe_slots == 0);
  CHECK(split.moe_slots == 16 * int64_t(c.n_expert_used) * c.n_embd);
  CHECK(split.local_ids == 16 * int64_t(c.n_expert_used));
  CHECK(split.activation_bytes() == one.activation_bytes() + uint64_t(split.moe_slots) * 4 + uint64_t(split.local_ids) * 4);
}

TEST_CASE("every kernel flashplan tune would time is one the CUDA executor runs") {
  for (const char* profile : {"h100-sxm-80gb", "h200-141gb", "2x-h100-sxm-80gb"}) {
    CAPTURE(profile);
    const LoadedPlan lp =
        verify_plan(test::compile_bytes(test::full_model(), test::shipped_profile(profile)), "full.fplan");
    const auto targets = tune_targets(*lp, "full.fplan");
    REQUIRE(!targets.empty());
    for (const TuneTarget& t : targets)
      for (const std::string& k : t.kernels) {
        CAPTURE(k);
        cuda::ProductKernel pk{};
        CHECK(cuda::product_kernel_for(k, t.op, t.type, pk) == "");
        CHECK((pk == cuda::ProductKernel::matvec || pk == cuda::ProductKernel::matvec_xf32 ||
               pk == cuda::ProductKernel::gemm_dequant_f16));
      }
  }
}
