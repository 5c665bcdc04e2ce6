// The CUDA engine running compiled plans:
//   - the HF oracle's tiny model, compiled in-test for this GPU (its matching shipped
//     profile, else a profile named as `flashplan probe` names the GPU): greedy tokens
//     byte-identical to the CUDA engine without a plan and to the CPU engine, with the
//     decode graph and without; every product node dispatched by the plan's kernel id;
//   - a plan that places routed experts host_mapped (a profile with too little usable
//     memory): those tensors load into pinned mapped host memory, same greedy tokens;
//   - graph segments: a replayed decode step under the plan's default segmentation is
//     exactly one graph launch; a plan whose decode phase is split (graph, eager, graph,
//     and a graph of the head alone) runs each decode step as that many graph launches
//     plus the eager nodes, with greedy tokens identical to the unsplit plan's, to the
//     engine without a plan and to the CPU executor's; replayed steps allocate no device
//     memory (free bytes unchanged after the capture);
//   - programmatic dependent launch (the plan's overlap_prev, on by default): on compute
//     capability 9.0+ every decode node is marked (every kernel of the step but cuBLAS's
//     and NCCL's waits for the previous one); the plan compiled with and without it
//     (--no-pdl) gives bit-identical logits and the same greedy tokens, graphs on and off,
//     the executor launched exactly the decode phase's marked nodes overlapped (all of
//     them; none on a GPU below 9.0), and tokens drawn on the device (argmax and the
//     sampler: the sample node overlapped too) are the same;
//   - a plan for another GPU is refused naming both;
//   - --weights random:SEED: the full DS4 Flash layout from a header-only GGUF, planned
//     for this GPU, filled on the device (no weight bytes read) runs a prefill chunk and
//     decode steps with finite logits;
//   - a model that cannot fit: the loader names the first tensor that does not fit, with
//     the bytes needed and free, before mapping anything (no crash).
#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <span>
#include <tuple>

#include "ops/core/error.h"
#include "planner/compile/compile.h"
#include "planner/memory/cuda_buffers.h"
#include "planner/model/synth.h"
#include "planner/profile/probed_profile.h"
#include "runtime/cpu/engine.h"
#include "runtime/cuda/device_weights.h"
#include "runtime/cuda/engine.h"
#include "runtime/plan/plan_binding.h"
#include "runtime/sampling/sampler.h"
#include "tests/gpu/this_gpu_profile.h"
#include "tests/support/greedy.h"

using namespace fp;
using fp::test::error_of;
using fp::test::greedy;
using fp::test::profile_for_this_gpu;
using fp::test::this_gpu;

namespace {

const std::string kTiny = std::string(FLASHPLAN_TEST_DATA) + "/hf/seed1/tiny.gguf";

std::shared_ptr<const LoadedPlan> compile_for(const Model& m, const DeviceProfile& prof, CompileOptions o) {
  const auto pl = compile_plan(m, prof, o);
  return std::make_shared<LoadedPlan>(verify_plan(serialize_plan(*pl), prof.name + ".fplan"));
}

// The tiny model's options every test here plans with: plain numerics (CPU/CUDA token
// parity), a 1024-token context.
CompileOptions tiny_options() {
  CompileOptions co;
  co.numerics = Numerics::plain;
  co.max_context = 1024;
  co.model_file = "tiny.gguf";
  return co;
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

}  // namespace

TEST_CASE("cuda engine from a plan: the same greedy tokens as without one") {
  const Model m = Model::open(kTiny);
  const auto plan = compile_for(m, profile_for_this_gpu(), tiny_options());
  const std::vector<int32_t> prompt = {0, 5, 17, 42, 99, 3, 250, 7, 7, 31, 64, 2, 9, 11, 200, 1, 4, 8, 15, 16};

  cuda::CudaOptions ref_o;
  ref_o.numerics = Numerics::plain;
  ref_o.max_context = 1024;
  ref_o.max_step = 256;
  auto ref = cuda::CudaEngine::open(kTiny, ref_o);
  const auto want = greedy(*ref, prompt, 16);
  cpu::CpuOptions cpu_o;
  cpu_o.numerics = Numerics::plain;
  cpu_o.max_context = 1024;
  auto cpu_e = cpu::CpuEngine::open(kTiny, cpu_o);
  CHECK(greedy(*cpu_e, prompt, 16) == want);

  for (bool graphs : {true, false}) {
    CAPTURE(graphs);
    cuda::CudaOptions o = options_of(plan);
    o.graphs = graphs;
    auto e = cuda::CudaEngine::open(kTiny, o);
    REQUIRE(e->products() != nullptr);
    // The loader maps the plan's chunks (small tensors share a packed chunk): the device
    // holds exactly the weight bytes the plan counted.
    CHECK(e->weight_bytes() - e->load_info().host_bytes == (*plan)->memory()->weights_device_bytes());
    CHECK(e->products()->for_step(1)->name == "decode");
    CHECK(e->load_info().plan == plan->path);
    CHECK(e->load_info().source == "file");
    CHECK(greedy(*e, prompt, 16) == want);
    // Chunks that land in other prefill buckets give the same tokens.
    o.max_step = 7;
    auto small = cuda::CudaEngine::open(kTiny, o);
    CHECK(greedy(*small, prompt, 16) == want);
  }
}

TEST_CASE("plan segments: a decode step is one graph launch; a split decode phase runs as split") {
  const Model m = Model::open(kTiny);
  const auto plan = compile_for(m, profile_for_this_gpu(), tiny_options());
  const plan::Phase* dec = phase_for_step(*plan, 1);
  REQUIRE(dec->segments()->size() == 1);
  REQUIRE(dec->segments()->Get(0)->graph());
  const uint32_t nodes = dec->nodes()->size();

  // The same plan with its decode phase in four segments: a graph, 3 eager nodes, a
  // graph up to the head, and the head (output_hc_head, output_norm, output, sample).
  auto t = plan->root->UnPack();
  plan::PhaseT* d = nullptr;
  for (auto& ph : t->phases)
    if (ph->name == "decode") d = ph.get();
  REQUIRE(d != nullptr);
  const uint32_t a = nodes / 3, head = nodes - 4;
  REQUIRE(d->nodes[head]->name == "output_hc_head");
  d->segments.clear();
  const std::vector<std::tuple<uint32_t, uint32_t, bool>> segs = {
      {0, a, true}, {a, 3, false}, {a + 3, head - a - 3, true}, {head, 4, true}};
  for (const auto& [first, count, graph] : segs) {
    auto s = std::make_unique<plan::SegmentT>();
    s->first = first;
    s->count = count;
    s->graph = graph;
    d->segments.push_back(std::move(s));
  }
  const auto split = std::make_shared<LoadedPlan>(verify_plan(serialize_plan(*t), "split.fplan"));
  delete t;

  const std::vector<int32_t> prompt = {0, 5, 17, 42, 99, 3, 250, 7, 7, 31, 64, 2, 9, 11, 200, 1, 4, 8, 15, 16};
  constexpr int kSteps = 16;
  struct Run {
    std::vector<int32_t> tokens;
    std::vector<cuda::Executor::StepStats> decode;  // per decode step
    size_t free_after_capture = 0, free_at_end = 0;  // device bytes free
  };
  auto free_bytes = [] {
    size_t f = 0, t = 0;
    REQUIRE(cudaMemGetInfo(&f, &t) == cudaSuccess);
    return f;
  };
  // As test::greedy, with the executor's stats after every decode step.
  auto run = [&](const cuda::CudaOptions& o) {
    auto e = cuda::CudaEngine::open(kTiny, o);
    auto s = e->new_session();
    const cuda::Executor& x = dynamic_cast<cuda::CudaSession&>(*s).executor();
    Run r;
    int32_t tok = argmax_token(s->append(prompt));
    for (int i = 0; i < kSteps; ++i) {
      r.tokens.push_back(tok);
      tok = argmax_token(s->append(std::span<const int32_t>(&tok, 1)));
      r.decode.push_back(x.last_step());
      if (i == 1) r.free_after_capture = free_bytes();
    }
    r.free_at_end = free_bytes();
    return r;
  };
  auto describe = [](const Run& r) {
    std::string s;
    for (const auto& st : r.decode) s += str(" ", st.graph_launches, "+", st.eager_nodes);
    return s;
  };

  cpu::CpuOptions cpu_o;
  cpu_o.numerics = Numerics::plain;
  cpu_o.max_context = 1024;
  auto cpu_e = cpu::CpuEngine::open(kTiny, cpu_o);
  const auto want = greedy(*cpu_e, prompt, kSteps);
  cuda::CudaOptions no_plan;
  no_plan.numerics = Numerics::plain;
  no_plan.max_context = 1024;
  CHECK(run(no_plan).tokens == want);

  // Decode steps: the first eager (every node), the second captures, the rest replay.
  const Run whole = run(options_of(plan));
  MESSAGE("default plan, decode steps as graph launches + eager nodes:", describe(whole));
  CHECK(whole.tokens == want);
  CHECK(whole.decode[0].graph_launches == 0);
  CHECK(whole.decode[0].eager_nodes == nodes);
  for (int i = 1; i < kSteps; ++i) {
    CAPTURE(i);
    CHECK(whole.decode[i].graph_launches == 1);
    CHECK(whole.decode[i].eager_nodes == 0);
  }
  CHECK(whole.free_at_end == whole.free_after_capture);  // replayed steps allocate no device memory

  const Run parts = run(options_of(split));
  MESSAGE("split plan (graph ", a, ", eager 3, graph ", head - a - 3, ", graph 4 nodes):", describe(parts));
  CHECK(parts.tokens == want);
  for (int i = 1; i < kSteps; ++i) {
    CAPTURE(i);
    CHECK(parts.decode[i].graph_launches == 3);
    CHECK(parts.decode[i].eager_nodes == 3);
  }
  CHECK(parts.free_at_end == parts.free_after_capture);

  cuda::CudaOptions eager = options_of(split);
  eager.graphs = false;
  const Run flat = run(eager);
  CHECK(flat.tokens == want);
  for (const auto& st : flat.decode) {
    CHECK(st.graph_launches == 0);
    CHECK(st.eager_nodes == nodes);
  }
}

TEST_CASE("plan PDL: every node overlapping the previous kernel gives the same logits and tokens as without") {
  const Model m = Model::open(kTiny);
  const DeviceProfile prof = profile_for_this_gpu();
  const auto on = compile_for(m, prof, tiny_options());
  CompileOptions off_o = tiny_options();
  off_o.pdl = false;
  const auto off = compile_for(m, prof, off_o);
  // What the decode phase marks; the executor must launch exactly those overlapped.
  auto marked = [](const LoadedPlan& p) {
    int64_t n = 0;
    for (const plan::Node* x : *phase_for_step(p, 1)->nodes()) n += x->overlap_prev();
    return n;
  };
  const int64_t want_overlaps = marked(*on);
  const int64_t decode_nodes = int64_t(phase_for_step(*on, 1)->nodes()->size());
  CHECK(marked(*off) == 0);
  CHECK((*on)->provenance()->options()->pdl());
  CHECK(!(*off)->provenance()->options()->pdl());
  if (prof.cc() >= 90) {
    // One GPU: no GEMM in a decode step, no collective; every node overlaps.
    CHECK(want_overlaps == decode_nodes);
  } else {
    MESSAGE("compute capability ", prof.cc() / 10, ".", prof.cc() % 10, " < 9.0: the plan marks no node; this only "
            "checks that the two plans agree");
    CHECK(want_overlaps == 0);
  }

  const std::vector<int32_t> prompt = {0, 5, 17, 42, 99, 3, 250, 7, 7, 31, 64, 2, 9, 11, 200, 1, 4, 8, 15, 16};
  constexpr int kSteps = 12;
  struct Run {
    std::vector<int32_t> tokens;
    std::vector<std::vector<float>> logits;  // the prompt's last row, then every decode step's
    std::vector<int64_t> overlaps;           // StepStats::overlap_nodes per decode step
  };
  auto run = [&](const std::shared_ptr<const LoadedPlan>& p, bool graphs) {
    cuda::CudaOptions o = options_of(p);
    o.graphs = graphs;
    auto e = cuda::CudaEngine::open(kTiny, o);
    auto s = e->new_session();
    const cuda::Executor& x = dynamic_cast<cuda::CudaSession&>(*s).executor();
    Run r;
    std::span<const float> l = s->append(prompt);
    for (int i = 0; i < kSteps; ++i) {
      r.logits.emplace_back(l.begin(), l.end());
      const int32_t tok = argmax_token(l);
      r.tokens.push_back(tok);
      l = s->append(std::span<const int32_t>(&tok, 1));
      r.overlaps.push_back(x.last_step().overlap_nodes);
    }
    return r;
  };
  for (bool graphs : {true, false}) {
    CAPTURE(graphs);
    const Run a = run(off, graphs), b = run(on, graphs);
    CHECK(b.tokens == a.tokens);
    // Bit for bit: an overlapped matvec reads its inputs only after the previous kernel.
    for (int i = 0; i < kSteps; ++i) {
      CAPTURE(i);
      REQUIRE(a.logits[i].size() == b.logits[i].size());
      CHECK(std::memcmp(a.logits[i].data(), b.logits[i].data(), a.logits[i].size() * sizeof(float)) == 0);
    }
    // Launched as planned: every marked node on each step that launches kernels (graphs:
    // the first decode step runs eagerly, the second captures, later ones replay).
    for (int i = 0; i < kSteps; ++i) {
      CAPTURE(i);
      CHECK(a.overlaps[i] == 0);
      CHECK(b.overlaps[i] == (graphs && i >= 2 ? 0 : want_overlaps));
    }
  }

  // Tokens drawn on the device (the plan's sample node: argmax, or the sampler with its
  // CUB sort and scan between overlapped kernels): the same with and without PDL.
  auto drawn = [&](const std::shared_ptr<const LoadedPlan>& p, bool graphs, float temperature) {
    cuda::CudaOptions o = options_of(p);
    o.graphs = graphs;
    auto e = cuda::CudaEngine::open(kTiny, o);
    SamplerOptions so;
    so.temperature = temperature;
    so.top_k = 40;
    so.top_p = 0.9f;
    so.seed = 7;
    Sampler smp(so);
    auto s = e->new_session();
    std::vector<int32_t> out;
    int32_t t = s->append_sample(prompt, smp);
    for (int i = 0; i < kSteps; ++i) {
      out.push_back(t);
      t = s->append_sample(std::span<const int32_t>(&t, 1), smp);
    }
    return out;
  };
  for (bool graphs : {true, false})
    for (float temperature : {0.0f, 0.8f}) {
      CAPTURE(graphs);
      CAPTURE(temperature);
      CHECK(drawn(on, graphs, temperature) == drawn(off, graphs, temperature));
    }
}

TEST_CASE("host_mapped weights from the plan go to pinned host memory, same greedy tokens") {
  const Model m = Model::open(kTiny);
  CompileOptions co = tiny_options();
  DeviceProfile prof = profile_for_this_gpu();
  const auto on_device = compile_plan(m, prof, co);
  prof.usable_bytes = on_device->memory->total_device_bytes - 1;  // one layer of experts must move
  prof.host_memory_bytes = 0;
  const auto plan = compile_for(m, prof, co);
  REQUIRE((*plan)->memory()->offloaded_tensors() > 0);
  uint64_t host = 0;
  for (const plan::Weight* w : *(*plan)->weights())
    if (w->placement() == plan::Placement::host_mapped) host += w->bytes();
  MESSAGE((*plan)->memory()->offloaded_tensors(), " tensors (", host, " bytes) host_mapped: ",
          (*plan)->memory()->note()->str());

  const std::vector<int32_t> prompt = {0, 5, 17, 42, 99, 3, 250, 7, 7, 31, 64, 2, 9, 11, 200, 1, 4, 8, 15, 16};
  cuda::CudaOptions ref_o;
  ref_o.numerics = Numerics::plain;
  ref_o.max_context = 1024;
  auto ref = cuda::CudaEngine::open(kTiny, ref_o);
  CHECK(ref->load_info().host_bytes == 0);
  auto e = cuda::CudaEngine::open(kTiny, options_of(plan));
  CHECK(e->load_info().host_bytes == host);
  CHECK(greedy(*e, prompt, 16) == greedy(*ref, prompt, 16));
}

TEST_CASE("cuda engine refuses a plan for another GPU, naming both") {
  const Model m = Model::open(kTiny);
  const ProbedGpu g = this_gpu();
  const std::string other = g.name.find("H100") == std::string::npos ? "h100-sxm-80gb" : "h200-141gb";
  CompileOptions co;
  co.numerics = Numerics::plain;
  co.model_file = "tiny.gguf";
  const auto plan =
      compile_for(m, load_device_profile(std::string(FLASHPLAN_SOURCE_DIR) + "/plans/devices/" + other + ".yaml"), co);
  const std::string e = error_of([&] { cuda::CudaEngine::open(kTiny, options_of(plan)); });
  CHECK(e.find(other) != std::string::npos);
  CHECK(e.find(g.name) != std::string::npos);
}

TEST_CASE("random weights: the full model from a header-only GGUF runs with finite logits") {
  const std::string dir = std::filesystem::temp_directory_path() / "flashplan-gpu-plan";
  std::filesystem::create_directories(dir);
  SynthWriteOptions w;
  w.path = dir + "/full.header.gguf";
  w.header_only = true;
  write_synth(synth_preset("full"), w);
  ModelOpenOptions mo;
  mo.allow_header_only = true;
  const Model m = Model::open(w.path, mo);
  CompileOptions co;
  co.max_context = 8192;
  co.model_file = "full.header.gguf";
  const auto plan = compile_for(m, profile_for_this_gpu(), co);

  cuda::CudaOptions o = options_of(plan);
  o.random_seed = 1;
  std::unique_ptr<cuda::CudaEngine> e;
  const std::string err = error_of([&] { e = cuda::CudaEngine::open(w.path, o); });
  REQUIRE_MESSAGE(err.empty(), err);
  const LoadInfo li = e->load_info();
  CHECK(li.source == "random:1");
  CHECK(li.bytes > (80ull << 30));
  MESSAGE("random fill of ", double(li.bytes) / double(1ull << 30), " GiB (", double(li.host_bytes) / double(1ull << 30),
          " GiB on the host) in ", li.seconds, " s");
  CHECK(e->weight_bytes() - li.host_bytes == (*plan)->memory()->weights_device_bytes());
  auto s = e->new_session();
  std::vector<int32_t> prompt(40);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t((i * 7919 + 11) % e->config().n_vocab);
  auto check_finite = [](std::span<const float> l) {
    size_t bad = 0;
    for (float x : l) bad += !std::isfinite(x);
    return bad;
  };
  CHECK(check_finite(s->append(prompt)) == 0);
  int32_t t = 1;
  for (int i = 0; i < 3; ++i) {
    const auto l = s->append(std::span<const int32_t>(&t, 1));
    CHECK(check_finite(l) == 0);
    t = argmax_token(l);
  }
  std::filesystem::remove_all(dir);
}

TEST_CASE("a model that cannot fit: the loader names the tensor, the bytes needed and free") {
  const std::string dir = std::filesystem::temp_directory_path() / "flashplan-gpu-oom";
  std::filesystem::create_directories(dir);
  SynthConfig s = synth_preset("full");
  s.model.n_expert = 2048;  // 8x the experts: ~600 GiB
  SynthWriteOptions w;
  w.path = dir + "/huge.header.gguf";
  w.header_only = true;
  write_synth(s, w);
  gguf::OpenOptions go;
  go.allow_header_only = true;
  const gguf::File f = gguf::File::open(w.path, go);
  cuda::LoadOptions lo;
  lo.random_seed = 1;
  const std::string e = error_of([&] { cuda::load_weights(f, cuda::all_on_device(f), lo); });
  MESSAGE(e);
  CHECK(e.find("out of device memory") != std::string::npos);
  CHECK(e.find("blk.") != std::string::npos);
  CHECK(e.find("free of") != std::string::npos);
  // The GPU is still usable afterwards.
  void* p = nullptr;
  CHECK(cudaMalloc(&p, 1 << 20) == cudaSuccess);
  cudaFree(p);
  std::filesystem::remove_all(dir);
}

TEST_CASE("a plan budgeting less than the executor needs is refused; logits beyond the plan's rows are refused") {
  const Model m = Model::open(kTiny);
  const auto plan = compile_for(m, profile_for_this_gpu(), tiny_options());
  // A plan from a build whose executor needed less: the same plan with its budget cut.
  auto t = plan->root->UnPack();
  t->memory->activation_bytes /= 2;
  const auto small = std::make_shared<LoadedPlan>(verify_plan(serialize_plan(*t), "small-budget.fplan"));
  delete t;
  auto e = cuda::CudaEngine::open(kTiny, options_of(small));
  const std::string err = error_of([&] { e->new_session(); });
  CHECK_MESSAGE(err.find("the plan budgets") != std::string::npos, err);
  CHECK(err.find("recompile the plan with this build") != std::string::npos);

  // The plan budgets logits for MTP depth + 1 rows; a step asking for more is an error.
  auto ok = cuda::CudaEngine::open(kTiny, options_of(plan));
  auto s = ok->new_session();
  auto& ex = dynamic_cast<cuda::CudaSession&>(*s).executor();
  REQUIRE(ex.logit_rows() == cuda_logit_rows((*plan)->provenance()->options()->mtp_depth()));
  REQUIRE(ex.logit_rows() == 2);
  const std::vector<int32_t> toks = {1, 2, 3, 4, 5};
  std::vector<float> out(toks.size() * ok->config().n_vocab);
  const std::string rows = error_of([&] { ex.forward(toks.data(), 5, 0, 0, out.data()); });
  CHECK_MESSAGE(rows.find("logits of 5 rows asked, the executor holds 2") != std::string::npos, rows);
  // append_all still returns every row: it steps that many rows at a time.
  CHECK(s->append_all(toks).size() == out.size());
}

TEST_CASE("plan kv_dtype F16 (official numerics' default): the same greedy tokens as F32 KV, less KV budgeted") {
  // Official numerics rounds every stored KV row to F16 first, so F16 storage holds the
  // same values: every attention input, hence every token, is the F32 plan's.
  const Model m = Model::open(kTiny);
  CompileOptions co = tiny_options();
  co.numerics = Numerics::official;
  co.kv_dtype = DType::F32;
  const auto f32 = compile_for(m, profile_for_this_gpu(), co);
  co.kv_dtype = DType::F16;
  const auto f16 = compile_for(m, profile_for_this_gpu(), co);
  CHECK((*f16)->memory()->kv_bytes() < (*f32)->memory()->kv_bytes());
  const std::vector<int32_t> prompt = {0, 5, 17, 42, 99, 3, 250, 7, 7, 31, 64, 2, 9, 11, 200, 1, 4, 8, 15, 16,
                                       23, 42, 108, 4, 4, 19, 77, 301, 5, 6, 12, 90, 91, 92, 3, 2, 1};
  auto e32 = cuda::CudaEngine::open(kTiny, options_of(f32));
  const auto want = greedy(*e32, prompt, 24);
  for (int64_t step : {int64_t(256), int64_t(7)}) {  // one prefill chunk, and chunks in other buckets
    CAPTURE(step);
    cuda::CudaOptions o = options_of(f16);
    o.max_step = step;
    auto e16 = cuda::CudaEngine::open(kTiny, o);
    CHECK(greedy(*e16, prompt, 24) == want);
  }
  // F16 KV never runs with plain numerics: the planner refuses such a plan, and running an
  // official plan in plain numerics is refused at load (the F16 ring and rows launchers
  // refuse plain numerics too: ops_attention_test).
  cuda::CudaOptions plain = options_of(f16);
  plain.numerics = Numerics::plain;
  CHECK_THROWS_WITH(cuda::CudaEngine::open(kTiny, plain), doctest::Contains("the plan fixes official"));
}
