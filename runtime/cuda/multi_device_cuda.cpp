// MultiDeviceEngine / MultiDeviceSession (see multi_device.h): the plan's checks for
// every GPU, each device's weights from its slices, the communicators, and steps run on
// every device at once by one host thread each.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "ops/core/error.h"
#include "planner/memory/cuda_buffers.h"
#include "planner/plan_io/plan_view.h"
#include "runtime/cuda/device_threads.h"
#include "runtime/cuda/device_weights.h"
#include "runtime/cuda/multi_device.h"
#include "runtime/cuda/nccl_comms.h"
#include "runtime/plan/plan_binding.h"

namespace fp::cuda {

struct MultiDeviceEngine::Device {
  PlanDevice part;
  std::unique_ptr<DeviceWeights> dw;
  cpu::ModelW w;
};

namespace {

// Device d's share of the plan's memory budget (the per-device table of multi-GPU plans,
// the whole plan's for one GPU).
uint64_t planned_device_bytes(const LoadedPlan& p, int d) {
  const plan::Memory* m = p->memory();
  if (m->devices())
    for (const plan::DeviceMemory* x : *m->devices())
      if (x->device() == d) return x->total_bytes();
  return m->total_device_bytes();
}

// CUDA devices 0..n-1: the plan's device i runs on CUDA device i.
std::vector<int> first_devices(int n) {
  std::vector<int> v;
  for (int d = 0; d < n; ++d) v.push_back(d);
  return v;
}

}  // namespace

// =============================================================================
// Engine
// =============================================================================

MultiDeviceEngine::MultiDeviceEngine(Model model, const CudaOptions& o) : model_(std::move(model)), opts_(o) {
  if (!opts_.plan) fail("multi-device engine: needs a plan (it names the devices and each one's weights)");
  const LoadedPlan& p = *opts_.plan;
  const ModelConfig& c = model_.config();
  if (c.context_length > 0) opts_.max_context = std::min<int64_t>(opts_.max_context, int64_t(c.context_length));
  int visible = 0;
  if (cudaGetDeviceCount(&visible) != cudaSuccess || visible == 0) {
    cudaGetLastError();
    fail("multi-device engine: no CUDA device");
  }
  // Loading makes each device current in turn (and NCCL's init may too): give the caller
  // back its current device, which the single-GPU engine's sessions rely on.
  int caller_device = 0;
  cudaGetDevice(&caller_device);
  struct Restore {
    int d;
    ~Restore() { cudaSetDevice(d); }
  } restore{caller_device};
  std::vector<GpuIdentity> gpus;
  for (int d = 0; d < visible; ++d) gpus.push_back(gpu_identity(d));
  check_plan_for_gpus(p, model_.file(), model_.mtp_file(), gpus);
  check_options_against_plan(p, opts_.numerics, opts_.max_context, opts_.max_step);
  plan_op_graph(p, model_);  // the plan's nodes are this build's graph; each executor checks its walk
  products_ = std::make_shared<ProductKernels>(product_kernels(p));
  expert_split_ = p->parallelism() && p->parallelism()->routed_experts() == plan::Parallel::expert_split;
  const std::vector<PlanDevice> parts = plan_devices(p, model_.file());
  const int n = int(parts.size());
  device_name_ = n > 1 ? str(n, " x ", gpus[0].name) : gpus[0].name;

  // Every device's budget against its free memory, before loading anything.
  for (int d = 0; d < n; ++d) {
    size_t free_b = 0, total_b = 0;
    if (cudaSetDevice(d) != cudaSuccess || cudaMemGetInfo(&free_b, &total_b) != cudaSuccess)
      fail("multi-device engine: cannot read the memory of CUDA device ", d);
    if (planned_device_bytes(p, d) > free_b)
      fail(p.path, ": device ", d, " of the plan needs ", format_gib(double(planned_device_bytes(p, d))), ", ",
           gpus[size_t(d)].name, " (CUDA device ", d, ") has ", format_gib(double(free_b)), " free of ",
           format_gib(double(total_b)), "; free the GPU or compile for a smaller context (--max-context)");
  }

  LoadOptions lo;
  lo.random_seed = opts_.random_seed;
  if (opts_.progress) lo.progress = stderr_progress_bar();
  const gguf::File* mtp_file = model_.mtp_file();
  load_info_.source = opts_.random_seed ? "random:" + std::to_string(*opts_.random_seed) : "file";
  load_info_.direct_io = !opts_.random_seed;
  load_info_.plan = p.path;
  for (int d = 0; d < n; ++d) {
    auto dev = std::make_unique<Device>();
    dev->part = parts[size_t(d)];
    const std::vector<WeightPlacement> placements = weight_placements(dev->part, d);
    if (cudaSetDevice(d) != cudaSuccess) fail("multi-device engine: cannot use CUDA device ", d);
    dev->dw = std::make_unique<DeviceWeights>(load_weights(model_.file(), placements, lo));
    const LoadStats& ls = dev->dw->stats();
    load_info_.direct_io = load_info_.direct_io && ls.direct_io;
    load_info_.bytes += ls.bytes;
    load_info_.host_bytes += dev->dw->host_bytes();
    load_info_.seconds += ls.seconds;

    // Bind by role over this device's copies. Its routed-expert tensors hold experts
    // [expert_first, expert_first + expert_count): their matrices say so, and the
    // executor maps the router's ids into that range.
    const DeviceWeights& dw = *dev->dw;
    dev->w = cpu::bind_weights(model_, [&](const TensorRef& t) -> const uint8_t* {
      if (mtp_file && t.file == mtp_file) return nullptr;
      const DeviceTensor* x = dw.find(t.name());
      if (!x) fail("multi-device engine: ", t.name(), " is not loaded on device ", d, " (not in its slices)");
      return static_cast<const uint8_t*>(x->ptr);
    });
    dev->w.mtp.reset();  // no MTP block on CUDA yet
    dev->w.by_name.clear();
    for (cpu::LayerW& L : dev->w.layers)
      for (ref::Weight* e : {&L.gate_exps, &L.up_exps, &L.down_exps})
        if (!e->empty()) {
          const int64_t held = dw.at(e->name).ne[2];
          if (held != dev->part.expert_count)
            fail(e->name, ": device ", d, " holds ", held, " experts, its plan slice says ", dev->part.expert_count);
          e->experts = held;
        }
    devs_.push_back(std::move(dev));
  }

  comms_ = std::make_unique<Comms>(first_devices(n));
}

MultiDeviceEngine::~MultiDeviceEngine() = default;

std::unique_ptr<MultiDeviceEngine> MultiDeviceEngine::open(const std::string& path, const CudaOptions& o,
                                                           const ModelOpenOptions& mo) {
  ModelOpenOptions m = mo;
  m.allow_header_only = m.allow_header_only || o.random_seed.has_value();
  return std::make_unique<MultiDeviceEngine>(Model::open(path, m), o);
}

const Tokenizer& MultiDeviceEngine::tokenizer() const {
  std::call_once(tok_once_, [&] { tok_.emplace(Tokenizer::from_gguf(model_.file())); });
  return *tok_;
}

std::string MultiDeviceEngine::model_name() const {
  if (!model_.config().name.empty()) return model_.config().name;
  return std::filesystem::path(model_.file().path()).stem().string();
}

const cpu::ModelW& MultiDeviceEngine::device_weights(int d) const { return devs_.at(size_t(d))->w; }
const PlanDevice& MultiDeviceEngine::device_part(int d) const { return devs_.at(size_t(d))->part; }

std::unique_ptr<Session> MultiDeviceEngine::new_session() { return std::make_unique<MultiDeviceSession>(*this); }

// =============================================================================
// Session
// =============================================================================

MultiDeviceSession::MultiDeviceSession(const MultiDeviceEngine& e)
    : vocab_(e.config().n_vocab),
      max_ctx_(e.options().max_context),
      step_(e.options().max_step),
      host_sampling_(e.options().host_sampling) {
  const int n = e.devices();
  threads_ = std::make_unique<DeviceThreads>(first_devices(n));
  execs_.resize(size_t(n));
  // Each executor is built on its own thread: its buffers, stream and graphs on its device.
  threads_->run([&](int d) {
    ExecutorOptions xo = executor_options(e.options(), e.products());
    // A multi-GPU plan budgets each device (its Memory fields sum them): check against this one's.
    if (const auto* per = (*e.options().plan)->memory()->devices())
      for (const plan::DeviceMemory* m : *per)
        if (m->device() == d) xo.planned_bytes = m->kv_bytes() + m->activation_bytes() + m->workspace_bytes();
    xo.part.comms = &e.comms();
    xo.part.rank = d;
    xo.part.expert_split = e.expert_split();
    xo.part.expert_first = e.device_part(d).expert_first;
    execs_[size_t(d)] = std::make_unique<Executor>(e.config(), e.device_weights(d), xo);
  });
  last_logits_.assign(size_t(vocab_), 0.0f);
  for (int d = 1; d < n; ++d) scratch_.emplace_back(size_t(execs_[size_t(d)]->logit_rows() * vocab_));
}

MultiDeviceSession::~MultiDeviceSession() {
  // Executors die on their own threads (their device current), before the threads do.
  if (threads_) threads_->run([&](int d) { execs_[size_t(d)].reset(); });
}

uint64_t MultiDeviceSession::kv_bytes() const { return execs_[0]->state_bytes(); }

void MultiDeviceSession::check_room(int64_t n) const {
  if (n == 0) fail("append: no tokens");
  if (pos_ + n > max_ctx_) fail("context full: ", pos_, " + ", n, " tokens exceed the session's max context ", max_ctx_);
}

// Every rank runs the same step shape as rank 0 (logits or none, how it samples): NCCL
// needs a collective captured in a graph on every rank or on none, and each executor
// captures a shape on its second use. The other ranks' logits go to scratch.
void MultiDeviceSession::step(const int32_t* tokens, int64_t n, int64_t logit_from, float* logits) {
  threads_->run([&](int d) {
    float* out = d == 0 || !logits ? logits : scratch_[size_t(d - 1)].data();
    execs_[size_t(d)]->forward(tokens, n, pos_, logit_from, out);
  });
}

std::span<const float> MultiDeviceSession::append(std::span<const int32_t> tokens) {
  const int64_t n = int64_t(tokens.size());
  check_room(n);
  for (int64_t b = 0; b < n; b += step_) {
    const int64_t m = std::min(step_, n - b);
    const bool last = b + m == n;
    step(tokens.data() + b, m, last ? m - 1 : m, last ? last_logits_.data() : nullptr);
    pos_ += m;
  }
  return {last_logits_.data(), size_t(vocab_)};
}

int32_t MultiDeviceSession::append_sample(std::span<const int32_t> tokens, Sampler& sampler) {
  if (host_sampling_) return Session::append_sample(tokens, sampler);
  const int64_t n = int64_t(tokens.size());
  check_room(n);
  // As CudaSession::append_sample: the sampler's state rides along with the step. Every
  // rank samples (the same step shape, see step()) from its own copy; rank 0's counts.
  std::vector<SampleDeviceState> st(execs_.size(), SampleDeviceState{sampler.rng_state(), sampler.params()});
  int32_t tok = -1;
  for (int64_t b = 0; b < n; b += step_) {
    const int64_t m = std::min(step_, n - b);
    if (b + m == n) {
      threads_->run([&](int d) {
        const int32_t t = execs_[size_t(d)]->forward_sample(tokens.data() + b, m, pos_,
                                                            sampler.greedy() ? nullptr : &st[size_t(d)]);
        if (d == 0) tok = t;
      });
    } else {
      step(tokens.data() + b, m, m, nullptr);
    }
    pos_ += m;
  }
  if (!sampler.greedy()) sampler.set_rng_state(st[0].rng);
  return tok;
}

std::span<const float> MultiDeviceSession::append_all(std::span<const int32_t> tokens) {
  const int64_t n = int64_t(tokens.size());
  check_room(n);
  all_logits_.resize(size_t(n * vocab_));
  const int64_t rows = execs_[0]->logit_rows();
  for (int64_t b = 0; b < n; b += rows) {
    const int64_t m = std::min(rows, n - b);
    step(tokens.data() + b, m, 0, all_logits_.data() + b * vocab_);
    pos_ += m;
  }
  std::memcpy(last_logits_.data(), all_logits_.data() + (n - 1) * vocab_, size_t(vocab_) * sizeof(float));
  return {all_logits_.data(), all_logits_.size()};
}

}  // namespace fp::cuda
