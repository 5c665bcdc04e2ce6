// CudaEngine / CudaSession (see engine.h), and the translation of the CPU binding's
// host pointers (into the mmapped GGUF) to the same bytes' device addresses.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "ops/core/error.h"
#include "runtime/cuda/device_weights.h"
#include "runtime/cuda/engine.h"

namespace fp::cuda {
namespace {

// Host byte ranges of the file's tensors and their device copies.
class PointerMap {
 public:
  PointerMap(const gguf::File& f, const DeviceWeights& dw) {
    for (const auto& t : f.tensors()) {
      const auto bytes = f.bytes(t);
      const DeviceTensor* d = dw.find(t.name);
      if (!d || bytes.empty()) continue;
      ranges_.push_back({bytes.data(), bytes.data() + bytes.size(), static_cast<uint8_t*>(d->ptr)});
    }
    std::sort(ranges_.begin(), ranges_.end(), [](const R& a, const R& b) { return a.begin < b.begin; });
  }

  template <typename T>
  const T* dev(const T* host, const char* what) const {
    if (!host) return nullptr;
    const auto* p = reinterpret_cast<const uint8_t*>(host);
    auto it = std::upper_bound(ranges_.begin(), ranges_.end(), p, [](const uint8_t* x, const R& r) { return x < r.begin; });
    if (it == ranges_.begin() || p >= (it - 1)->end) fail("cuda engine: ", what, " is not in a loaded tensor");
    --it;
    return reinterpret_cast<const T*>(it->dev + (p - it->begin));
  }
  ref::Weight dev(const ref::Weight& w) const {
    ref::Weight d = w;
    d.data = dev(w.data, w.name.c_str());
    return d;
  }

 private:
  struct R {
    const uint8_t* begin;
    const uint8_t* end;
    uint8_t* dev;
  };
  std::vector<R> ranges_;
};

cpu::LayerW to_device(const cpu::LayerW& h, const PointerMap& m) {
  cpu::LayerW d = h;
  for (auto mem : {&cpu::LayerW::hc_attn_fn, &cpu::LayerW::q_a, &cpu::LayerW::q_b, &cpu::LayerW::kv,
                   &cpu::LayerW::out_a, &cpu::LayerW::out_b, &cpu::LayerW::comp_kv, &cpu::LayerW::comp_gate,
                   &cpu::LayerW::comp_ape, &cpu::LayerW::idx_q_b, &cpu::LayerW::idx_proj, &cpu::LayerW::idx_comp_kv,
                   &cpu::LayerW::idx_comp_gate, &cpu::LayerW::idx_comp_ape, &cpu::LayerW::hc_ffn_fn,
                   &cpu::LayerW::gate_inp, &cpu::LayerW::gate_exps, &cpu::LayerW::up_exps, &cpu::LayerW::down_exps,
                   &cpu::LayerW::gate_sh, &cpu::LayerW::up_sh, &cpu::LayerW::down_sh})
    d.*mem = m.dev(h.*mem);
  for (auto mem : {&cpu::LayerW::hc_attn_scale, &cpu::LayerW::hc_attn_base, &cpu::LayerW::attn_norm,
                   &cpu::LayerW::q_a_norm, &cpu::LayerW::kv_norm, &cpu::LayerW::sinks, &cpu::LayerW::comp_norm,
                   &cpu::LayerW::idx_comp_norm, &cpu::LayerW::hc_ffn_scale, &cpu::LayerW::hc_ffn_base,
                   &cpu::LayerW::ffn_norm, &cpu::LayerW::exp_bias})
    d.*mem = m.dev(h.*mem, "a layer vector");
  d.tid2eid = m.dev(h.tid2eid, "ffn_gate_tid2eid");
  return d;
}

cpu::ModelW to_device(const cpu::ModelW& h, const PointerMap& m) {
  cpu::ModelW d;
  d.token_embd = m.dev(h.token_embd);
  d.output = m.dev(h.output);
  d.output_hc_fn = m.dev(h.output_hc_fn);
  d.output_hc_base = m.dev(h.output_hc_base, "output_hc_base");
  d.output_hc_scale = m.dev(h.output_hc_scale, "output_hc_scale");
  d.output_norm = m.dev(h.output_norm, "output_norm");
  for (const auto& L : h.layers) d.layers.push_back(to_device(L, m));
  return d;  // no MTP block on CUDA yet
}

}  // namespace

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
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, opts_.device) == cudaSuccess) device_name_ = prop.name;
  const cpu::ModelW host = cpu::bind_weights(model_);
  const auto t0 = std::chrono::steady_clock::now();
  LoadOptions lo;
  dw_ = std::make_unique<DeviceWeights>(load_weights(model_.file(), all_on_device(model_.file(), opts_.device), lo));
  load_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  dev_w_ = to_device(host, PointerMap(model_.file(), *dw_));
}

CudaEngine::~CudaEngine() = default;

std::unique_ptr<CudaEngine> CudaEngine::open(const std::string& path, const CudaOptions& o,
                                             const ModelOpenOptions& mo) {
  return std::make_unique<CudaEngine>(Model::open(path, mo), o);
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

namespace {

ExecutorOptions exec_options(const CudaOptions& o) {
  ExecutorOptions e;
  e.numerics = o.numerics;
  e.max_context = o.max_context;
  e.max_step = o.max_step;
  e.graphs = o.graphs;
  e.exact_matmul = o.exact_matmul;
  return e;
}

}  // namespace

CudaSession::CudaSession(const CudaEngine& e, const CudaOptions& o)
    : vocab_(e.config().n_vocab),
      max_ctx_(o.max_context),
      step_(o.max_step),
      exec_(e.config(), e.device_weights(), exec_options(o)) {
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

std::span<const float> CudaSession::append_all(std::span<const int32_t> tokens) {
  const int64_t n = int64_t(tokens.size());
  if (n == 0) fail("append: no tokens");
  if (pos_ + n > max_ctx_) fail("context full: ", pos_, " + ", n, " tokens exceed the session's max context ", max_ctx_);
  all_logits_.resize(size_t(n * vocab_));
  for (int64_t b = 0; b < n; b += step_) {
    const int64_t m = std::min(step_, n - b);
    exec_.forward(tokens.data() + b, m, pos_, 0, all_logits_.data() + b * vocab_);
    pos_ += m;
  }
  std::memcpy(last_logits_.data(), all_logits_.data() + (n - 1) * vocab_, size_t(vocab_) * sizeof(float));
  return {all_logits_.data(), all_logits_.size()};
}

}  // namespace fp::cuda
