// The CUDA executor: the DS4 forward pass as the CPU reference executor orders it
// (runtime/cpu/executor.h, one method per op kind), over device buffers, launching the
// op families' CUDA kernels (ops/<family>/<family>_cuda.h) on one stream.
//
// Everything a step needs is allocated at construction for max_step tokens and
// max_context positions: activations, workspaces, the sequence's KV rings, compressor
// rings and rows, indexer keys. A step never allocates. The step's tokens and first
// position live in device memory, so a step shape (tokens in the step, first logit row,
// logits wanted, how the step samples) can be captured into CUDA graphs and replayed at
// every position.
//
// Graph segments: with a plan, every op method is one node of the step's phase, in the
// plan's order (a cursor walks the phase's node list and refuses, naming the node and
// both sides, a method that is not the plan's next node; at construction a dry walk of
// every phase the executor runs does this before any step). The phase's segments
// (schemas/plan.fbs Segment) decide how the nodes run: a graph segment is captured into
// one CUDA graph on the second use of a step shape and replayed with one cudaGraphLaunch
// after that (its op methods then launch nothing); a segment with graph: false always runs
// eagerly. With the default segmentation (every CUDA kernel capturable) a decode step is
// one graph launch. Without a plan the whole step is one implicit graph segment.
// Limits: at most kMaxShapes = 8 step shapes are captured and at most kMaxGraphs = 512
// graphs in all (a shape whose phase needs more than are left runs eagerly); a step that
// is traced, a shape's first use and --no-graphs run eagerly.
//
// Products: with a plan (ProductKernels), every matmul, grouped_matmul and moe node runs
// the kernel the plan chose for it in the step's phase (decode for one token, else the
// prefill bucket holding the step's size); every other op kind has one CUDA kernel and
// runs it. With no plan the linear family picks (ops/linear/linear_cuda.h).
// Programmatic dependent launch: every node the plan marks overlap_prev (any op whose
// kernel's registry entry has overlap_min_cc; not the cuBLAS GEMM, not NCCL) launches
// its kernels with it (ops/core/launch.h Launch): each kernel may start while the one
// before it in the stream finishes, and waits for it before touching what it wrote, so
// results do not change; without a plan no launch overlaps.
// Two products of one input whose weights have one type and shape (the shared expert's
// gate and up, a compressor's kv and gate) are one paired matmul node
// (planner/graph/op_graph.h pairs_in_one_node), with a plan or without: one linear_pair call.
//
// Multi-GPU plans (ExecutorOptions::part, runtime/cuda/MULTI_GPU.md): one executor per
// device, each on its own device, stream and graphs. Every node runs on every device; an
// expert_split moe node computes the slots of the experts its device holds (zeros in the
// others), the plan's all_reduce node sums those slot outputs over the devices through
// NCCL on the executor's stream (inside its graph), and moe_combine weighs them in slot
// order: bit-identical to one GPU.
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
#include "ops/rope/rope.h"
#include "ops/sample/sample.h"
#include "planner/graph/op_kind.h"
#include "planner/model/config.h"
#include "runtime/cpu/weights.h"

namespace fp {
struct LoadedPlan;
}

namespace fp::cuda {

class Comms;

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

// The kernel behind registry id `id` for an `op` node over `wtype` weights (out), or why the
// CUDA executor has none ("" when it has).
std::string product_kernel_for(const std::string& id, OpKind op, DType wtype, ProductKernel& out);

// What the plan decided for one product node: its kernel, and whether it is launched
// with programmatic dependent launch (Node.overlap_prev: the matvec starts while the
// previous kernel finishes and waits for it before reading its inputs).
struct ProductChoice {
  ProductKernel kernel = ProductKernel::matvec;
  bool overlap_prev = false;
};

// The phases the executor runs (decode and the prefill buckets) as it runs them: the
// choice (kernel and overlap_prev) of every product node, keyed by the node's first weight
// (the matrix; moe: ffn_gate_exps) and a paired matmul's second weight too, every node's op,
// layer, first weight and a pair's second weight (the executor's walk is checked against
// them), and the graph segments.
struct ProductKernels {
  struct Node {
    OpKind op = OpKind::matmul;
    int32_t layer = -1;
    std::string name;    // "blk.7.attn_q_b", for messages
    std::string weight;  // the first weight's name; "" when the node reads none
    std::string second;  // a paired matmul's second weight; "" for every other node
    bool attention_tc = false;  // an attention node the plan runs on cuda.attention.prefill (tensor cores)
    bool overlap_prev = false;  // Node.overlap_prev: its launches go with programmatic dependent launch
  };
  struct Segment {
    uint32_t first = 0, count = 0;
    bool graph = false;  // one CUDA graph; false: its nodes launch eagerly every step
  };
  struct Phase {
    std::string name;
    uint32_t min_tokens = 1, max_tokens = 1;
    std::unordered_map<std::string, ProductChoice> by_weight;
    std::vector<Node> nodes;
    std::vector<Segment> segments;  // cover nodes in order (verify_plan checks)
    uint32_t head_first = 0;        // the output head's first node: a step without logits ends there
    // "" when the executor's i-th node of a step (op, layer, first weight: "" to not
    // compare weights; a pair's second weight, "" for an unpaired node) is the plan's node
    // i; else the phase, node and both sides.
    std::string walk_difference(uint32_t i, OpKind op, int32_t layer, std::string_view weight,
                                std::string_view second = {}) const;
    // "" when a step that ran `ran` nodes ended where the plan's phase does (with the
    // head when logits were computed, else before it).
    std::string walk_end_difference(uint32_t ran, bool logits) const;
  };
  std::vector<Phase> phases;  // decode first, then the prefill buckets in order
  bool uses_gemm = false;
  bool uses_moe_grouped = false;
  const Phase* for_step(int64_t n) const;  // nullptr when no phase covers n
};

// Reads the plan's phases; refuses, naming node, phase and id, a kernel id this executor
// does not implement or one that does not read the node's weight dtype, a node of any
// other op whose kernel is not a registered, implemented CUDA kernel, a graph segment
// holding a kernel this build cannot capture, and a segment on another stream or with
// events (one stream only).
ProductKernels product_kernels(const LoadedPlan& p);

struct ExecutorOptions {
  Numerics numerics = Numerics::plain;
  int64_t max_context = 4096;
  int64_t max_step = 256;
  bool graphs = true;         // capture step shapes into CUDA graphs (decode, prefill chunks)
  bool exact_matmul = false;  // f32 activations in every product (no q8 quantisation)
  // The plan's kv_dtype F16: raw KV rings and attention rows stored as F16 (official
  // numerics only, where the stored rows are F16-rounded: the same values, half the bytes).
  bool kv_f16 = false;
  std::shared_ptr<const ProductKernels> products;  // from a plan; null: the linear family picks
  // The plan's budget for activations, workspace and sequence state (0: no plan). The
  // executor refuses to start when its buffer table needs more.
  uint64_t planned_bytes = 0;
  // Rows of logits one step may return (0: max_step). Generation needs the last row (one
  // per verified MTP draft); every row of a prefill chunk costs n_vocab floats of device
  // and pinned memory (1.06 GB for 2048 rows of DS4).
  int64_t logit_rows = 0;
  // Multi-GPU plans: this executor's device in the plan (its NCCL rank in `comms`) and,
  // when the plan splits the routed experts, the first expert its weights hold (its
  // expert tensors hold [expert_first, expert_first + experts)). comms null: one GPU.
  struct Part {
    const Comms* comms = nullptr;
    int rank = 0;
    bool expert_split = false;
    int64_t expert_first = 0;
  } part;
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
  int64_t logit_rows() const;     // rows of logits one step may return

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

  // Per-node GPU time of the steps run while enabled (`flashplan profile`): a CUDA event is
  // recorded before each node's launches and one at the step's end; a node's time is the
  // distance between its event and the next. Such steps run eagerly (no graphs), where a
  // one-token step is bound by the host's launches; with `in_graph` (and graphs on) the
  // step is captured with the events inside its graphs (event record nodes) and run once
  // from them, as a replayed step runs, except that no node overlaps the previous one (PDL
  // is off in that capture: a kernel cannot overlap across an event node). The step shape
  // must have run before (launchers' one-time set-up is not capturable); the capture is
  // dropped after the step. The events add a little time of their own.
  struct NodeTime {
    OpKind op = OpKind::matmul;
    int32_t layer = -1;     // -1: embedding, head
    std::string weight;     // the node's first weight ("" when it reads none it names)
    DType type = DType::F32;
    int64_t rows = 0, cols = 0, experts = 0;
    int products = 1;       // a paired matmul: 2 (its second weight has the first's type and shape)
    double us = 0;
  };
  struct Profile {
    bool enabled = false;
    bool in_graph = false;
    std::vector<NodeTime> nodes;  // the last profiled step's, in launch order
  } profile;

  // CUDA graph launches so far, and what the last step ran: graph launches and nodes
  // launched outside a graph (eager steps, segments with graph: false). A replayed
  // decode step under the default segmentation: {1, 0}.
  int64_t graph_launches() const;
  struct StepStats {
    int64_t graph_launches = 0;
    int64_t eager_nodes = 0;
    // Nodes whose launches this step issued (eagerly or into a graph it captured) with
    // programmatic dependent launch, as the plan's overlap_prev asked (a node marked but
    // launching nothing this step, the sample node of a step that reads the logits, counts
    // too). 0 on a replay.
    int64_t overlap_nodes = 0;
  };
  StepStats last_step() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  ExecutorOptions o_;
};

}  // namespace fp::cuda
