// The CPU backend behind fp::Engine / fp::Session: a bound model, the reference
// executor and per-sequence state. Prefill runs in steps of at most max_step tokens,
// decode one token at a time, MTP verification as one step; all give the same bits.
//
// MTP (standard pairing, MODEL.md §7): the MTP row for position i combines the trunk's
// final HC state h_i with token t_{i+1} at RoPE position i and predicts t_{i+2}. A
// session with MTP fills its MTP cache for every position whose next token is known
// (prompt included) as it goes; mtp_draft() runs the one pending row with the decided
// next token and then chains k-1 more rows on the block's own output state.
#pragma once
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "ops/numerics/mode.h"
#include "planner/graph/op_graph.h"
#include "planner/model/model.h"
#include "planner/plan_io/plan_io.h"
#include "runtime/cpu/executor.h"
#include "runtime/cpu/weights.h"
#include "runtime/engine.h"
#include "runtime/state/sequence_state.h"
#include "runtime/tokenizer/tokenizer.h"

namespace fp::cpu {

struct CpuOptions {
  Numerics numerics = Numerics::plain;
  int64_t max_context = 4096;  // clamped to the model's context_length
  int64_t max_step = 256;      // prefill chunk (tokens per forward step)
  int mtp_draft = 0;           // max MTP draft per step; 0 = MTP off
  int64_t min_rollback = 0;    // positions truncate() can go back besides MTP drafts
                               // (bench rewinds each frontier's generation this way)
  // A compiled plan for the cpu backend (runtime/plan/plan_binding.h): the engine refuses
  // it for another model or device, and refuses options that differ from it (numerics,
  // max context; max_step above its largest prefill bucket; an MTP draft other than 0 or
  // its depth). Its node lists must equal the op graph this build makes, node by node.
  std::shared_ptr<const LoadedPlan> plan;
};

class CpuEngine : public Engine {
 public:
  CpuEngine(Model model, const CpuOptions& o);
  static std::unique_ptr<CpuEngine> open(const std::string& path, const CpuOptions& o,
                                         const ModelOpenOptions& mo = {});

  const ModelConfig& config() const override { return model_.config(); }
  const Tokenizer& tokenizer() const override;
  std::string backend_name() const override { return "cpu"; }
  std::string model_name() const override;
  LoadInfo load_info() const override;
  std::unique_ptr<Session> new_session() override;

  const Model& model() const { return model_; }
  const ModelW& weights() const { return weights_; }
  const OpGraph& graph() const { return graph_; }  // the node lists the executor walks
  const CpuOptions& options() const { return opts_; }

 private:
  void bind_plan(const LoadedPlan& p);

  Model model_;
  ModelW weights_;
  CpuOptions opts_;
  OpGraph graph_;
  mutable std::once_flag tok_once_;
  mutable std::optional<Tokenizer> tok_;
};

class CpuSession : public Session {
 public:
  CpuSession(const CpuEngine& e, const CpuOptions& o);

  std::span<const float> append(std::span<const int32_t> tokens) override;
  std::span<const float> append_all(std::span<const int32_t> tokens) override;
  void reset() override;
  uint64_t position() const override { return uint64_t(pos_); }
  uint64_t max_context() const override { return uint64_t(st_.sizing.max_context); }
  uint64_t kv_bytes() const override;
  void truncate(uint64_t n) override;
  uint64_t max_rollback() const override { return uint64_t(st_.sizing.max_rollback); }
  int mtp_max_draft() const override { return mtp_k_; }
  std::vector<int32_t> mtp_draft(int32_t next, int k) override;

  Executor& executor() { return exec_; }   // traces, for tests
  const SequenceState& state() const { return st_; }

 protected:
  const char* backend() const override { return "cpu"; }

 private:
  // One forward step of n <= max_step tokens; logits of rows [logit_from, n) to out.
  void step(const int32_t* tokens, int64_t n, int64_t logit_from, float* out);
  void mtp_rows(const int32_t* next_tokens, const float* H, int64_t n, int64_t pos0, float* logits);

  const CpuEngine& engine_;
  int64_t vocab_;
  int mtp_k_ = 0;
  SequenceState st_;
  Executor exec_;
  int64_t pos_ = 0;
  std::vector<float> last_logits_, all_logits_;
  // MTP bookkeeping: the trunk's final HC states of the last step and the first
  // position whose MTP row is still to be computed.
  std::vector<float> hidden_;
  int64_t hidden_pos0_ = 0, hidden_n_ = 0;
  int64_t mtp_pos_ = 0;
  std::vector<float> mtp_logits_;
};

}  // namespace fp::cpu
