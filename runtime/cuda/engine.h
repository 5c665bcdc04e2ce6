// The CUDA backend behind fp::Engine / fp::Session: the model's tensors in device memory
// (runtime/cuda/device_weights.h: one VMM mapping per tensor), bound by role like the
// CPU engine binds them, and one CUDA executor per session (its activations and sequence
// state allocated when the session starts). Prefill runs in chunks of max_step tokens,
// decode one token per step through a captured CUDA graph (unless graphs are off).
// append_sample picks the next token on the device at the end of the step (inside its
// graph: ops/sample) and copies back only the token and the sampler's advanced RNG
// state, not the n_vocab logits (CudaOptions::host_sampling: the logits to the host and
// fp::Sampler there instead; the tokens are the same up to exp()'s last bit).
// No MTP yet: sessions report mtp_max_draft() = 0.
//
// With a plan (CudaOptions::plan): refused for another model, MTP file or GPU
// (runtime/plan/plan_binding.h) and for options that differ from it; its product-kernel
// choices go to the executor (a kernel id this build lacks is refused at load, naming
// node, phase and id) and its placement to the loader (host_mapped tensors in pinned
// mapped host memory, the others each in their own VMM mapping). Without a plan every
// tensor goes to the device and the linear family picks kernels.
// CUDA-free header.
#pragma once
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ops/numerics/mode.h"
#include "planner/model/model.h"
#include "planner/plan_io/plan_io.h"
#include "runtime/cpu/weights.h"
#include "runtime/cuda/executor.h"
#include "runtime/plan/plan_binding.h"
#include "runtime/engine.h"
#include "runtime/tokenizer/tokenizer.h"

namespace fp::cuda {

class DeviceWeights;

struct CudaOptions {
  Numerics numerics = Numerics::plain;
  int64_t max_context = 4096;  // clamped to the model's context_length
  int64_t max_step = 256;      // prefill chunk
  bool graphs = true;          // --no-graphs: every step eager
  bool exact_matmul = false;   // f32 activations in every product
  int device = 0;
  std::shared_ptr<const LoadedPlan> plan;  // see above; numerics, context, chunk must agree with it
  std::optional<uint64_t> random_seed;     // fill planned tensors with valid random blocks (no file read)
  bool progress = false;                   // the loader's progress bar on stderr
  bool host_sampling = false;              // append_sample copies the logits and samples on the host
};

// Shared with the multi-device engine (multi_device.h): a GPU's identity as plans match
// it, and the executor options a session's executor gets from the engine's options.
GpuIdentity gpu_identity(int device);
ExecutorOptions executor_options(const CudaOptions& o, std::shared_ptr<const ProductKernels> products);

class CudaEngine : public Engine {
 public:
  CudaEngine(Model model, const CudaOptions& o);
  ~CudaEngine() override;
  static std::unique_ptr<CudaEngine> open(const std::string& path, const CudaOptions& o,
                                          const ModelOpenOptions& mo = {});

  const ModelConfig& config() const override { return model_.config(); }
  const Tokenizer& tokenizer() const override;
  std::string backend_name() const override { return "cuda"; }
  std::string model_name() const override;
  std::string device_name() const override { return device_name_; }
  LoadInfo load_info() const override { return load_info_; }
  std::unique_ptr<Session> new_session() override;

  const Model& model() const { return model_; }
  const cpu::ModelW& device_weights() const { return dev_w_; }  // every pointer on the device
  const CudaOptions& options() const { return opts_; }
  std::shared_ptr<const ProductKernels> products() const { return products_; }  // null without a plan
  double load_seconds() const { return load_info_.seconds; }
  uint64_t weight_bytes() const;

 private:
  Model model_;
  CudaOptions opts_;
  std::unique_ptr<DeviceWeights> dw_;
  cpu::ModelW dev_w_;
  std::shared_ptr<const ProductKernels> products_;
  LoadInfo load_info_;
  std::string device_name_;
  mutable std::once_flag tok_once_;
  mutable std::optional<Tokenizer> tok_;
};

class CudaSession : public Session {
 public:
  CudaSession(const CudaEngine& e, const CudaOptions& o);

  std::span<const float> append(std::span<const int32_t> tokens) override;
  std::span<const float> append_all(std::span<const int32_t> tokens) override;
  int32_t append_sample(std::span<const int32_t> tokens, Sampler& sampler) override;
  void reset() override { pos_ = 0; }
  uint64_t position() const override { return uint64_t(pos_); }
  uint64_t max_context() const override { return uint64_t(max_ctx_); }
  uint64_t kv_bytes() const override { return exec_.state_bytes(); }

  Executor& executor() { return exec_; }

 protected:
  const char* backend() const override { return "cuda"; }

 private:
  int64_t vocab_, max_ctx_, step_;
  bool host_sampling_;
  Executor exec_;
  int64_t pos_ = 0;
  std::vector<float> last_logits_, all_logits_;
};

}  // namespace fp::cuda
