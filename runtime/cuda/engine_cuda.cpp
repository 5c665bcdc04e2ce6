// CudaEngine / CudaSession (see engine.h): the plan's checks and placement, loading the
// weights, and binding them by role over their device copies (the CPU binding with a
// resolver that gives each tensor's device address, so no host bytes are needed).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "ops/core/error.h"
#include "planner/memory/cuda_buffers.h"
#include "planner/plan_io/plan_view.h"
#include "runtime/cuda/device_weights.h"
#include "runtime/cuda/engine.h"
#include "runtime/plan/plan_binding.h"

namespace fp::cuda {

GpuIdentity gpu_identity(int device) {
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) fail("cuda engine: cannot read the properties of device ", device);
  GpuIdentity g;
  g.name = prop.name;
  g.cc_major = uint32_t(prop.major);
  g.cc_minor = uint32_t(prop.minor);
  g.sm_count = uint32_t(prop.multiProcessorCount);
  g.total_bytes = prop.totalGlobalMem;
  return g;
}

// =============================================================================
// Engine
// =============================================================================

CudaEngine::CudaEngine(Model model, const CudaOptions& o) : model_(std::move(model)), opts_(o) {
  const ModelConfig& c = model_.config();
  if (c.context_length > 0) opts_.max_context = std::min<int64_t>(opts_.max_context, int64_t(c.context_length));
  if (opts_.max_context <= 0) fail("cuda engine: max context ", opts_.max_context, ", expected > 0");
  if (opts_.max_step <= 0) fail("cuda engine: prefill chunk ", opts_.max_step, ", expected > 0");
  int n_dev = 0;
  if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) fail("cuda engine: no CUDA device");
  if (opts_.device < 0 || opts_.device >= n_dev) fail("cuda engine: device ", opts_.device, ", have ", n_dev);
  if (cudaSetDevice(opts_.device) != cudaSuccess) fail("cuda engine: cannot use device ", opts_.device);
  const GpuIdentity gpu = gpu_identity(opts_.device);
  device_name_ = gpu.name;

  std::vector<WeightPlacement> placements;
  if (opts_.plan) {
    const LoadedPlan& p = *opts_.plan;
    check_plan_for_gpu(p, model_.file(), model_.mtp_file(), gpu);
    check_options_against_plan(p, opts_.numerics, opts_.max_context, opts_.max_step);
    plan_op_graph(p, model_);  // the plan's nodes are this build's graph; the executor checks its walk against them
    products_ = std::make_shared<ProductKernels>(product_kernels(p));
    const std::vector<PlanDevice> parts = plan_devices(p, model_.file());
    if (parts.size() != 1) fail(p.path, ": a plan for ", parts.size(), " GPUs runs on the multi-device engine");
    placements = weight_placements(parts[0], opts_.device);
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess && p->memory()->total_device_bytes() > free_b)
      fail(p.path, ": the plan needs ", format_gib(double(p->memory()->total_device_bytes())),
           " of device memory (weights ", format_gib(double(p->memory()->weights_device_bytes())), ", KV ",
           format_gib(double(p->memory()->kv_bytes())), "), ", gpu.name, " has ", format_gib(double(free_b)), " free of ",
           format_gib(double(total_b)), "; free the GPU or compile for a smaller context (--max-context)");
  } else {
    placements = all_on_device(model_.file(), opts_.device);
  }

  LoadOptions lo;
  lo.random_seed = opts_.random_seed;
  if (opts_.progress) lo.progress = stderr_progress_bar();
  dw_ = std::make_unique<DeviceWeights>(load_weights(model_.file(), placements, lo));
  const LoadStats& ls = dw_->stats();
  load_info_.source = opts_.random_seed ? "random:" + std::to_string(*opts_.random_seed) : "file";
  load_info_.direct_io = !opts_.random_seed && ls.direct_io;
  load_info_.bytes = ls.bytes;
  load_info_.host_bytes = dw_->host_bytes();
  load_info_.seconds = ls.seconds;
  if (opts_.plan) load_info_.plan = opts_.plan->path;

  // Bind by role over the device copies; the separate MTP file's tensors stay unbound.
  const gguf::File* mtp_file = model_.mtp_file();
  dev_w_ = cpu::bind_weights(model_, [&](const TensorRef& t) -> const uint8_t* {
    if (mtp_file && t.file == mtp_file) return nullptr;
    const DeviceTensor* d = dw_->find(t.name());
    if (!d) fail("cuda engine: ", t.name(), " is not loaded (not in the placement list)");
    return static_cast<const uint8_t*>(d->ptr);
  });
  dev_w_.mtp.reset();  // no MTP block on CUDA yet
  dev_w_.by_name.clear();
}

CudaEngine::~CudaEngine() = default;

std::unique_ptr<CudaEngine> CudaEngine::open(const std::string& path, const CudaOptions& o,
                                             const ModelOpenOptions& mo) {
  ModelOpenOptions m = mo;
  m.allow_header_only = m.allow_header_only || o.random_seed.has_value();  // random weights need no bytes
  return std::make_unique<CudaEngine>(Model::open(path, m), o);
}

const Tokenizer& CudaEngine::tokenizer() const {
  std::call_once(tok_once_, [&] { tok_.emplace(Tokenizer::from_gguf(model_.file())); });
  return *tok_;
}

std::string CudaEngine::model_name() const {
  if (!model_.config().name.empty()) return model_.config().name;
  return std::filesystem::path(model_.file().path()).stem().string();
}

uint64_t CudaEngine::weight_bytes() const { return dw_->device_bytes() + dw_->host_bytes(); }

std::unique_ptr<Session> CudaEngine::new_session() { return std::make_unique<CudaSession>(*this, opts_); }

// =============================================================================
// Session
// =============================================================================

ExecutorOptions executor_options(const CudaOptions& o, std::shared_ptr<const ProductKernels> products) {
  ExecutorOptions e;
  if (o.plan && (*o.plan)->memory()) {
    const auto* m = (*o.plan)->memory();
    e.planned_bytes = m->kv_bytes() + m->activation_bytes() + m->workspace_bytes();
    e.logit_rows = cuda_logit_rows((*o.plan)->provenance()->options()->mtp_depth());  // as the planner budgeted
  }
  if (o.plan) e.kv_f16 = (*o.plan)->provenance()->options()->kv_dtype() == plan::DType::F16;
  e.products = std::move(products);
  e.numerics = o.numerics;
  e.max_context = o.max_context;
  e.max_step = o.max_step;
  e.graphs = o.graphs;
  e.exact_matmul = o.exact_matmul;
  return e;
}

CudaSession::CudaSession(const CudaEngine& e, const CudaOptions& o)
    : vocab_(e.config().n_vocab),
      max_ctx_(o.max_context),
      step_(o.max_step),
      host_sampling_(o.host_sampling),
      exec_(e.config(), e.device_weights(), executor_options(o, e.products())) {
  last_logits_.assign(size_t(vocab_), 0.0f);
}

std::span<const float> CudaSession::append(std::span<const int32_t> tokens) {
  const int64_t n = int64_t(tokens.size());
  if (n == 0) fail("append: no tokens");
  if (pos_ + n > max_ctx_) fail("context full: ", pos_, " + ", n, " tokens exceed the session's max context ", max_ctx_);
  for (int64_t b = 0; b < n; b += step_) {
    const int64_t m = std::min(step_, n - b);
    const bool last = b + m == n;
    exec_.forward(tokens.data() + b, m, pos_, last ? m - 1 : m, last ? last_logits_.data() : nullptr);
    pos_ += m;
  }
  return {last_logits_.data(), size_t(vocab_)};
}

int32_t CudaSession::append_sample(std::span<const int32_t> tokens, Sampler& sampler) {
  if (host_sampling_) return Session::append_sample(tokens, sampler);
  const int64_t n = int64_t(tokens.size());
  if (n == 0) fail("append: no tokens");
  if (pos_ + n > max_ctx_) fail("context full: ", pos_, " + ", n, " tokens exceed the session's max context ", max_ctx_);
  // The sampler's state rides along with the step: uploaded with the tokens, its RNG
  // copied back with the token, so host draws (MTP verify rows) and device draws stay
  // one stream whichever path the next step takes.
  SampleDeviceState st{sampler.rng_state(), sampler.params()};
  int32_t tok = -1;
  for (int64_t b = 0; b < n; b += step_) {
    const int64_t m = std::min(step_, n - b);
    if (b + m == n) {
      tok = exec_.forward_sample(tokens.data() + b, m, pos_, sampler.greedy() ? nullptr : &st);
    } else {
      exec_.forward(tokens.data() + b, m, pos_, m, nullptr);
    }
    pos_ += m;
  }
  if (!sampler.greedy()) sampler.set_rng_state(st.rng);
  return tok;
}

std::span<const float> CudaSession::append_all(std::span<const int32_t> tokens) {
  const int64_t n = int64_t(tokens.size());
  if (n == 0) fail("append: no tokens");
  if (pos_ + n > max_ctx_) fail("context full: ", pos_, " + ", n, " tokens exceed the session's max context ", max_ctx_);
  all_logits_.resize(size_t(n * vocab_));
  // Steps of at most as many rows as the executor holds logits for (a plan budgets only
  // the rows generation needs; chunked prefill gives the same logits as one step).
  const int64_t rows = exec_.logit_rows();
  for (int64_t b = 0; b < n; b += rows) {
    const int64_t m = std::min(rows, n - b);
    exec_.forward(tokens.data() + b, m, pos_, 0, all_logits_.data() + b * vocab_);
    pos_ += m;
  }
  std::memcpy(last_logits_.data(), all_logits_.data() + (n - 1) * vocab_, size_t(vocab_) * sizeof(float));
  return {all_logits_.data(), all_logits_.size()};
}

}  // namespace fp::cuda
