// The CUDA backend for plans over several GPUs of one host (issue 8; the design is
// runtime/cuda/MULTI_GPU.md). One process drives every GPU of the plan: the engine holds
// each device's weights (the plan's slices for it: whole copies, and its range of the
// routed experts) and NCCL communicators over the plan's devices (rank = the device's
// index in the plan = CUDA device ordinal); each session holds one executor per device,
// each run by its own host thread (device_threads.h), with its own stream and graphs. A
// step runs on every device side by side; the tokens, logits and sampled token come from
// rank 0 (every rank computes the same: the routed experts' outputs are exchanged
// exactly, everything else is replicated). Every rank runs the whole step, head and
// sampling included: NCCL requires a collective to be graph-captured on all ranks or on
// none, so every executor must see the same step shapes (and the head runs in parallel).
//
// It also runs a one-GPU plan (N = 1, NCCL with one rank), which is how the multi-device
// path is tested against the single-GPU engine on a machine with one GPU.
// Not supported: a rank that throws mid-step leaves the others waiting in NCCL (the
// process should exit); MTP; host-placed weights in plans for several GPUs.
// CUDA-free header.
#pragma once
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "planner/model/model.h"
#include "runtime/cpu/weights.h"
#include "runtime/cuda/engine.h"
#include "runtime/engine.h"
#include "runtime/plan/plan_devices.h"
#include "runtime/tokenizer/tokenizer.h"

namespace fp::cuda {

class Comms;
class DeviceThreads;

class MultiDeviceEngine : public Engine {
 public:
  // o.plan is required (it names the devices); o.device is not used: the plan's device i
  // runs on CUDA device i.
  MultiDeviceEngine(Model model, const CudaOptions& o);
  ~MultiDeviceEngine() override;
  static std::unique_ptr<MultiDeviceEngine> open(const std::string& path, const CudaOptions& o,
                                                 const ModelOpenOptions& mo = {});

  const ModelConfig& config() const override { return model_.config(); }
  const Tokenizer& tokenizer() const override;
  std::string backend_name() const override { return "cuda"; }
  std::string model_name() const override;
  std::string device_name() const override { return device_name_; }
  LoadInfo load_info() const override { return load_info_; }
  std::unique_ptr<Session> new_session() override;

  int devices() const { return int(devs_.size()); }
  // The plan's moe nodes are expert_split (its all-reduce and combine follow them): so for
  // every plan over several GPUs, and for such a plan folded onto one (tests).
  bool expert_split() const { return expert_split_; }
  const Comms& comms() const { return *comms_; }
  const CudaOptions& options() const { return opts_; }
  std::shared_ptr<const ProductKernels> products() const { return products_; }
  const cpu::ModelW& device_weights(int d) const;  // device d's pointers (its expert tensors: its range)
  const PlanDevice& device_part(int d) const;

 private:
  struct Device;
  Model model_;
  CudaOptions opts_;
  std::vector<std::unique_ptr<Device>> devs_;
  std::unique_ptr<Comms> comms_;
  std::shared_ptr<const ProductKernels> products_;
  bool expert_split_ = false;
  LoadInfo load_info_;
  std::string device_name_;
  mutable std::once_flag tok_once_;
  mutable std::optional<Tokenizer> tok_;
};

class MultiDeviceSession : public Session {
 public:
  explicit MultiDeviceSession(const MultiDeviceEngine& e);
  ~MultiDeviceSession() override;

  std::span<const float> append(std::span<const int32_t> tokens) override;
  std::span<const float> append_all(std::span<const int32_t> tokens) override;
  int32_t append_sample(std::span<const int32_t> tokens, Sampler& sampler) override;
  void reset() override { pos_ = 0; }
  uint64_t position() const override { return uint64_t(pos_); }
  uint64_t max_context() const override { return uint64_t(max_ctx_); }
  uint64_t kv_bytes() const override;

  Executor& executor(int d) { return *execs_[size_t(d)]; }

 protected:
  const char* backend() const override { return "cuda"; }

 private:
  // One step on every device, the same on each; rank 0's logits to `logits`.
  void step(const int32_t* tokens, int64_t n, int64_t logit_from, float* logits);
  void check_room(int64_t n) const;

  int64_t vocab_, max_ctx_, step_;
  bool host_sampling_;
  std::unique_ptr<DeviceThreads> threads_;
  std::vector<std::unique_ptr<Executor>> execs_;
  int64_t pos_ = 0;
  std::vector<float> last_logits_, all_logits_;
  std::vector<std::vector<float>> scratch_;  // ranks 1.. : logits nobody reads
};

}  // namespace fp::cuda
