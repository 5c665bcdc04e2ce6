// Plans over several GPUs through NCCL (issue 8; runtime/cuda/multi_device.h, MULTI_GPU.md):
//   - NCCL with one rank: an in-place all-reduce eagerly and inside a captured, replayed
//     CUDA graph leaves the buffer bit for bit as it was (the sum over one rank);
//   - random weights: a part of a tensor (an expert slice) filled on its own is that part
//     of the whole tensor's fill, so 1-GPU and N-GPU plans under --weights random agree;
//   - one GPU: the tiny model's plan for this GPU through the multi-device engine (one
//     executor on its own thread, NCCL with one rank) gives the single-GPU engine's
//     greedy tokens, with graphs and without, in prefill chunks of 7, and device-sampled
//     tokens (temperature, top-k, top-p, a seed) equal too;
//   - one GPU, the multi-GPU step itself: the tiny model's 2-GPU plan folded onto one GPU
//     (device 0 holding every expert; expert_split moe writing slots, the all-reduce of
//     one NCCL rank captured in the decode graph, moe_combine) gives the 1-GPU plan's
//     tokens;
//   - two GPUs (not run, reported as skipped, with fewer than 2 visible): the tiny model's
//     2-GPU plan (exact parallelism, the default: routed experts split, their per-slot outputs
//     all-reduced exactly, the rest replicated) gives its 1-GPU plan's greedy and sampled
//     tokens byte for byte, with graphs and without; a replayed decode step is one graph
//     launch on each device (the NCCL all-reduces captured inside it).
#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <span>

#include "ops/core/error.h"
#include "ops/quant/quant_cuda.h"
#include "planner/compile/compile.h"
#include "planner/profile/probed_profile.h"
#include "runtime/cuda/engine.h"
#include "runtime/cuda/multi_device.h"
#include "runtime/cuda/nccl_comms.h"
#include "runtime/plan/plan_binding.h"
#include "runtime/sampling/sampler.h"
#include "tests/gpu/gpu_util.h"
#include "tests/gpu/this_gpu_profile.h"
#include "tests/support/fold_plan.h"
#include "tests/support/greedy.h"

using namespace fp;
using fp::test::greedy;
using fp::test::profile_for_this_gpu;

namespace {

const std::string kTiny = std::string(FLASHPLAN_TEST_DATA) + "/hf/seed1/tiny.gguf";
const std::vector<int32_t> kPrompt = {0, 5, 17, 42, 99, 3, 250, 7, 7, 31, 64, 2, 9, 11, 200, 1, 4, 8, 15, 16};
constexpr int kSteps = 16;

int visible_gpus() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

// Evaluated when the test cases register (before main): the 2-GPU case is skipped, and
// says so, on a machine with fewer GPUs.
bool fewer_than_two_gpus() {
  static const bool fewer = [] {
    const int n = visible_gpus();
    if (n < 2)
      std::printf("not run: \"multi-device engine on two GPUs\" needs 2 GPUs, %d visible (reported as skipped)\n", n);
    return n < 2;
  }();
  return fewer;
}

std::shared_ptr<const LoadedPlan> tiny_plan(uint32_t gpus) {
  const Model m = Model::open(kTiny);
  const DeviceProfile prof = profile_for_this_gpu(gpus);
  CompileOptions co;
  co.numerics = Numerics::plain;  // as the single-GPU plan tests
  co.max_context = 1024;
  co.model_file = "tiny.gguf";
  co.exact_parallel = true;
  const auto pl = compile_plan(m, prof, co);
  return std::make_shared<LoadedPlan>(verify_plan(serialize_plan(*pl), prof.name + ".fplan"));
}

cuda::CudaOptions options_of(const std::shared_ptr<const LoadedPlan>& p) {
  const PlanSettings s = plan_settings(*p);
  cuda::CudaOptions o;
  o.numerics = s.numerics;
  o.max_context = int64_t(s.max_context);
  o.max_step = s.max_step;
  o.plan = p;
  return o;
}

// kSteps tokens drawn on the device (Session::append_sample), greedy or sampled.
std::vector<int32_t> drawn(Engine& e, float temperature) {
  SamplerOptions so;
  so.temperature = temperature;
  so.top_k = 40;
  so.top_p = 0.9f;
  so.seed = 7;
  Sampler smp(so);
  auto s = e.new_session();
  std::vector<int32_t> out;
  int32_t t = s->append_sample(kPrompt, smp);
  for (int i = 0; i < kSteps; ++i) {
    out.push_back(t);
    t = s->append_sample(std::span<const int32_t>(&t, 1), smp);
  }
  return out;
}

}  // namespace

TEST_CASE("NCCL with one rank: an all-reduce eagerly and inside a replayed CUDA graph leaves the buffer as it was") {
  if (!cuda::Comms::available()) {
    MESSAGE("built without NCCL: ", cuda::Comms::version());
    REQUIRE(cuda::Comms::available());
  }
  MESSAGE("NCCL ", cuda::Comms::version());
  GPU_CHECK(cudaSetDevice(0));
  cuda::Comms comms({0});
  CHECK(comms.size() == 1);
  const char* nvls = std::getenv("NCCL_NVLS_ENABLE");
  REQUIRE(nvls != nullptr);  // set by Comms when it was unset
  MESSAGE("NCCL_NVLS_ENABLE=", nvls);
  constexpr size_t kN = 3 * 4096 + 5;
  std::vector<float> host(kN);
  for (size_t i = 0; i < kN; ++i) host[i] = float(int(i % 97) - 48) / 7.0f;
  host[7] = -0.0f;
  test::DevBuf buf(host);
  cudaStream_t s = nullptr;
  GPU_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  comms.all_reduce_sum(0, buf.as<float>(), kN, s);
  GPU_CHECK(cudaStreamSynchronize(s));
  std::vector<float> got = buf.get<float>(kN);
  CHECK(std::memcmp(got.data(), host.data(), kN * sizeof(float)) == 0);

  cudaGraph_t g = nullptr;
  cudaGraphExec_t ge = nullptr;
  GPU_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  comms.all_reduce_sum(0, buf.as<float>(), kN, s);
  GPU_CHECK(cudaStreamEndCapture(s, &g));
  GPU_CHECK(cudaGraphInstantiate(&ge, g, 0));
  for (int i = 0; i < 3; ++i) GPU_CHECK(cudaGraphLaunch(ge, s));
  GPU_CHECK(cudaStreamSynchronize(s));
  got = buf.get<float>(kN);
  CHECK(std::memcmp(got.data(), host.data(), kN * sizeof(float)) == 0);
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  cudaStreamDestroy(s);
}

TEST_CASE("random weights: a part of a tensor filled on its own is that part of the whole tensor's fill") {
  // What a multi-GPU plan's expert slices get under --weights random:SEED.
  for (DType t : {DType::Q8_0, DType::IQ2_XXS, DType::Q2_K, DType::F32, DType::I32}) {
    CAPTURE(dtype_name(t));
    const int64_t per = 1024 * traits(t).block, n = 4 * per;  // 4 "experts" of 1024 blocks
    const int64_t bytes = row_bytes(t, n);
    test::DevBuf whole{size_t(bytes)}, part{size_t(bytes / 2)};
    cuda::RandomFill f{0x1234, 0.05f, 0.0f, 8};
    cuda::fill_random(t, whole.p, n, f, nullptr);
    f.first = per;  // experts [1, 3)
    cuda::fill_random(t, part.p, 2 * per, f, nullptr);
    const auto a = whole.get<uint8_t>(size_t(bytes));
    const auto b = part.get<uint8_t>(size_t(bytes / 2));
    CHECK(std::memcmp(a.data() + bytes / 4, b.data(), size_t(bytes / 2)) == 0);
  }
}

TEST_CASE("multi-device engine on one GPU: a one-GPU plan through NCCL with one rank gives the single-GPU engine's tokens") {
  const auto plan = tiny_plan(1);
  REQUIRE(plan->root->device()->gpus() == 1);
  cuda::CudaOptions o = options_of(plan);
  auto single = cuda::CudaEngine::open(kTiny, o);
  const auto want = greedy(*single, kPrompt, kSteps);
  const auto want_argmax = drawn(*single, 0.0f);
  const auto want_drawn = drawn(*single, 0.8f);
  for (bool graphs : {true, false}) {
    for (int64_t chunk : {int64_t(0), int64_t(7)}) {
      CAPTURE(graphs);
      CAPTURE(chunk);
      cuda::CudaOptions mo = o;
      mo.graphs = graphs;
      if (chunk) mo.max_step = chunk;
      auto multi = cuda::MultiDeviceEngine::open(kTiny, mo);
      REQUIRE(multi->devices() == 1);
      CHECK(multi->load_info().plan == plan->path);
      CHECK(greedy(*multi, kPrompt, kSteps) == want);
      CHECK(drawn(*multi, 0.0f) == want_argmax);
      CHECK(drawn(*multi, 0.8f) == want_drawn);
    }
  }
}

TEST_CASE("multi-device engine on one GPU: the 2-GPU plan folded onto one GPU (slots, NCCL all-reduce of one rank in the graph, combine) gives the 1-GPU plan's tokens") {
  const auto one = tiny_plan(1);
  const auto folded = test::fold_onto_one_gpu(*tiny_plan(2));
  auto single = cuda::CudaEngine::open(kTiny, options_of(one));
  const auto want = greedy(*single, kPrompt, kSteps);
  const auto want_argmax = drawn(*single, 0.0f);
  const auto want_drawn = drawn(*single, 0.8f);
  for (bool graphs : {true, false}) {
    for (int64_t chunk : {int64_t(0), int64_t(7)}) {
      CAPTURE(graphs);
      CAPTURE(chunk);
      cuda::CudaOptions o = options_of(folded);
      o.graphs = graphs;
      if (chunk) o.max_step = chunk;
      auto multi = cuda::MultiDeviceEngine::open(kTiny, o);
      REQUIRE(multi->devices() == 1);
      REQUIRE(multi->expert_split());
      CHECK(multi->device_part(0).expert_count == int64_t(multi->config().n_expert));
      CHECK(greedy(*multi, kPrompt, kSteps) == want);
      CHECK(drawn(*multi, 0.0f) == want_argmax);
      CHECK(drawn(*multi, 0.8f) == want_drawn);
      if (!graphs || chunk) continue;
      auto s = multi->new_session();
      auto& ms = dynamic_cast<cuda::MultiDeviceSession&>(*s);
      int32_t t = argmax_token(s->append(kPrompt));
      for (int i = 0; i < 4; ++i) t = argmax_token(s->append(std::span<const int32_t>(&t, 1)));
      CHECK(ms.executor(0).last_step().graph_launches == 1);  // the all-reduces captured in the decode graph
      CHECK(ms.executor(0).last_step().eager_nodes == 0);
    }
  }
}

TEST_CASE("multi-device engine on two GPUs: the tiny model's 2-GPU plan gives its 1-GPU plan's tokens" *
          doctest::skip(fewer_than_two_gpus())) {
  const int n = visible_gpus();
  REQUIRE_MESSAGE(n >= 2, "not run: needs 2 GPUs, ", n, " visible");
  const auto one = tiny_plan(1);
  const auto two = tiny_plan(2);
  REQUIRE(two->root->device()->gpus() == 2);
  REQUIRE(two->root->parallelism() != nullptr);
  CHECK(two->root->parallelism()->attention() == plan::Parallel::replicated);
  auto single = cuda::CudaEngine::open(kTiny, options_of(one));
  const auto want = greedy(*single, kPrompt, kSteps);
  const auto want_argmax = drawn(*single, 0.0f);
  const auto want_drawn = drawn(*single, 0.8f);
  for (bool graphs : {true, false}) {
    for (int64_t chunk : {int64_t(0), int64_t(7)}) {
      CAPTURE(graphs);
      CAPTURE(chunk);
      cuda::CudaOptions o = options_of(two);
      o.graphs = graphs;
      if (chunk) o.max_step = chunk;
      auto multi = cuda::MultiDeviceEngine::open(kTiny, o);
      REQUIRE(multi->devices() == 2);
      CHECK(multi->device_part(0).expert_count + multi->device_part(1).expert_count ==
            int64_t(multi->config().n_expert));
      CHECK(greedy(*multi, kPrompt, kSteps) == want);
      CHECK(drawn(*multi, 0.0f) == want_argmax);
      CHECK(drawn(*multi, 0.8f) == want_drawn);
      if (!graphs || chunk) continue;
      // Replayed decode steps: one graph launch per device, the all-reduces inside it.
      auto s = multi->new_session();
      auto& ms = dynamic_cast<cuda::MultiDeviceSession&>(*s);
      int32_t t = argmax_token(s->append(kPrompt));
      for (int i = 0; i < 4; ++i) t = argmax_token(s->append(std::span<const int32_t>(&t, 1)));
      for (int d = 0; d < 2; ++d) {
        CAPTURE(d);
        CHECK(ms.executor(d).last_step().graph_launches == 1);
        CHECK(ms.executor(d).last_step().eager_nodes == 0);
      }
    }
  }
}
