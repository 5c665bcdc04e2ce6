// The CUDA executor: the DS4 forward pass as the CPU reference executor orders it
// (runtime/cpu/executor.h, one method per op kind), over device buffers, launching the
// op families' CUDA kernels (ops/<family>/<family>_cuda.h) on one stream.
//
// Everything a step needs is allocated at construction for max_step tokens and
// max_context positions: activations, workspaces, the sequence's KV rings, compressor
// rings and rows, indexer keys. A step never allocates. The step's tokens and first
// position live in device memory, so each step shape (the decode step; a full prefill
// chunk) is captured once into a CUDA graph, on its second use, and replayed at every
// position after that (at most 8 shapes; others run eagerly).
//
// Products: with a plan (ProductKernels), every matmul, grouped_matmul and moe node runs
// the kernel the plan chose for it in the step's phase (decode for one token, else the
// prefill bucket holding the step's size); the products inside other nodes (compressor,
// indexer, router) and every other op kind have one CUDA kernel each and run it. With
// no plan the linear family picks (ops/linear/linear_cuda.h).
//
// Numerics follow the plan's mode exactly as the CPU does (plain / official round
// trips). Results differ from the CPU executor only by summation order (f32 dot
// products, f32 online softmax): about 1e-6 relative per op.
//
// CUDA-free header: device pointers are plain pointers, the stream and graph opaque.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ops/hc/hc.h"
#include "ops/numerics/mode.h"
#include "ops/sample/sample.h"
#include "ops/rope/rope.h"
#include "planner/model/config.h"
#include "runtime/cpu/weights.h"

namespace fp {
struct LoadedPlan;
}

namespace fp::cuda {

// The product kernels this executor implements, by the plan's kernel ids. Adding one is
// a value here, a line in product_kernel_for() and a case where the executor launches
// that op (executor_cuda.cpp).
enum class ProductKernel : uint8_t {
  matvec,            // cuda.matvec.<type>, cuda.grouped_matvec.<type>
  matvec_xf32,       // the same with .xf32: f32 activations
  gemm_dequant_f16,  // cuda.gemm.dequant_cublas_f16
  moe_matvec,        // cuda.moe.matvec
  moe_grouped_mma,   // cuda.moe.grouped_dequant_mma
};

// The kernel of every product node of the phases the executor runs (decode and the
// prefill buckets), keyed by the node's first weight (the matrix; moe: ffn_gate_exps).
struct ProductKernels {
  struct Phase {
    std::string name;
    uint32_t min_tokens = 1, max_tokens = 1;
    std::unordered_map<std::string, ProductKernel> by_weight;
  };
  std::vector<Phase> phases;  // decode first, then the prefill buckets in order
  bool uses_gemm = false;
  bool uses_moe_grouped = false;
  const Phase* for_step(int64_t n) const;  // nullptr when no phase covers n
};

// Reads the plan's product nodes; refuses, naming node, phase and id, a kernel id this
// executor does not implement or one that does not read the node's weight dtype, and a
// node of any other op whose kernel is not a registered, implemented CUDA kernel.
ProductKernels product_kernels(const LoadedPlan& p);

struct ExecutorOptions {
  Numerics numerics = Numerics::plain;
  int64_t max_context = 4096;
  int64_t max_step = 256;
  bool graphs = true;         // capture step shapes into CUDA graphs (decode, prefill chunks)
  bool exact_matmul = false;  // f32 activations in every product (no q8 quantisation)
  std::shared_ptr<const ProductKernels> products;  // from a plan; null: the linear family picks
};

class Executor {
 public:
  // `w`: every tensor pointer in device memory (see translate_weights in engine).
  Executor(const ModelConfig& c, const cpu::ModelW& w, const ExecutorOptions& o);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  const ExecutorOptions& options() const { return o_; }
  uint64_t device_bytes() const;  // everything this executor allocated
  uint64_t state_bytes() const;   // of which the sequence state (KV, compressors, indexer keys)

  // Trunk over tokens[0..n) at positions pos0.. (n <= max_step); the sequence state is
  // this executor's. Logits of rows [logit_from, n) to host `logits` when non-null.
  void forward(const int32_t* tokens, int64_t n, int64_t pos0, int64_t logit_from, float* logits);

  // Trunk over tokens like forward(), then the next token picked from the last row on
  // the device, inside the step (and its captured graph): only the token comes back, not
  // the logits. `state` null: greedy (the argmax). Else sampled under state->params from
  // state->rng (ops/sample/sample_cuda.h): the state is uploaded before the step and the
  // advanced RNG written back into *state after it.
  int32_t forward_sample(const int32_t* tokens, int64_t n, int64_t pos0, SampleDeviceState* state);

  // Residual stream after the embedding and after each layer, [n][hc*n_embd] each, and
  // the output head's normed input, copied to the host when enabled (a sync per layer;
  // for parity checks against the CPU executor's StreamTrace).
  struct Trace {
    bool enabled = false;
    std::vector<std::vector<float>> after_layer;
    std::vector<float> final_hidden;
  } trace;

  int64_t graph_launches() const { return graph_launches_; }

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  ExecutorOptions o_;
  int64_t graph_launches_ = 0;
};

}  // namespace fp::cuda
