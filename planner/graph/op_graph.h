// The op graph of the DS4 forward pass per phase (MODEL.md §5-§7), for any model size:
// layer kinds come from the compress ratios, hash layers from hash_layer_count, the MTP
// block from the model's MTP tensors. Nodes are in execution order and name the
// weights they read and the buffers they read and write; kernel choice, placement and
// segmentation happen later (planner/select, planner/placement).
//
// Phases: one `prefill` per chunk-size bucket (nodes shaped for the bucket's largest
// chunk; the head runs on the chunk's last token), `decode` (1 token), and, when the
// model has an MTP block, `mtp_draft` (the MTP block on 1 token) and `mtp_verify` (the
// trunk on depth + 1 tokens, logits for each).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ops/registry/kernel_registry.h"
#include "planner/graph/op_kind.h"
#include "planner/model/model.h"

namespace fp {

enum class PhaseKind : uint8_t { prefill = 0, decode = 1, mtp_draft = 2, mtp_verify = 3 };
const char* phase_kind_name(PhaseKind k);

enum class BufferKind : uint8_t {
  activation = 0, kv_raw = 1, kv_compressed = 2, index_keys = 3, compressor_state = 4, workspace = 5, io = 6,
};
const char* buffer_kind_name(BufferKind k);

struct GraphBuffer {
  std::string name;      // "q", "blk.7.kv_compressed"
  BufferKind kind = BufferKind::activation;
  int32_t layer = -1;
  DType dtype = DType::F32;
  uint64_t bytes = 0;
};

// Multi-GPU plans (issue 8): how a node runs across the devices, and which part of a
// weight each device holds. Values equal schemas/plan.fbs Parallel and SliceAxis.
enum class Parallel : uint8_t { single = 0, replicated = 1, tensor_split = 2, expert_split = 3, collective = 4 };
enum class SliceAxis : uint8_t { whole = 0, outer = 1, columns = 2 };
const char* parallel_name(Parallel p);

struct WeightUse {
  const gguf::TensorInfo* tensor = nullptr;
  uint8_t file = 0;      // 0 model, 1 separate MTP file
  double read_bytes = 0; // bytes of it one step reads (embedding: the rows looked up); per device when split
  SliceAxis axis = SliceAxis::whole;  // multi-GPU: split into `devices` slices along this axis
};

// A matmul node may carry two weights: two products that read the same input, whose
// weights have one dtype and one shape (the shared expert's gate and up, a compressor's
// kv and gate), run as one node with one input and an output per weight (one launch on
// the CUDA matvec path, MatvecArgs::w2; two GEMMs on the GEMM path). Its shape's m is
// one weight's rows; weights, bytes and flops count both. Weights that differ in dtype
// or shape stay two nodes. The op graph and the CUDA executor's walk without a plan
// both decide with this.
bool pairs_in_one_node(DType a_type, int64_t a_cols, int64_t a_rows, DType b_type, int64_t b_cols, int64_t b_rows);

struct GraphNode {
  OpKind op = OpKind::matmul;
  std::string name;      // "blk.2.attn_q_b" (matches --override globs)
  int32_t layer = -1;    // -1 model-level; n_layer = MTP block
  std::vector<WeightUse> weights;
  std::vector<uint32_t> inputs, outputs;  // buffer ids
  KernelShape shape;     // weight_bytes / host_weight_bytes filled after placement
  int64_t max_rows = 0;  // attention / indexer: visible KV rows at the max context (sizes workspaces)
  int32_t device = 0;    // -1: every device of a multi-GPU plan
  Parallel parallel = Parallel::single;
};

struct PhaseGraph {
  PhaseKind kind = PhaseKind::decode;
  std::string name;
  uint32_t min_tokens = 1, max_tokens = 1;
  std::vector<GraphNode> nodes;
};

// How a multi-GPU graph spreads the model (devices = 1: the one-GPU graph, unchanged).
// Routed experts are always split by experts; the other parts are replicated or split
// (tensor parallel) as the compiler chose (planner/compile/compile.cpp "Parallelism").
struct ParallelOptions {
  uint32_t devices = 1;
  bool attention_split = false;  // q_b rows, heads, o_a groups, o_b columns; all-reduce after o_b
  bool shared_split = false;     // shared expert gate/up rows, down columns; summed with the moe all-reduce
  bool head_split = false;       // output rows (vocabulary); all-gather of the logits
};

// Why `par` cannot be built for `m` ("" when it can): divisibility of heads, groups, and
// quant blocks of the column-split tensors.
std::string parallel_rejection(const Model& m, const ParallelOptions& par);

// Expected experts selected on the busiest device for one token, when `used` of
// `experts` are picked uniformly without replacement and device g holds experts
// [g*E/N, (g+1)*E/N).
double expected_busiest_experts(uint32_t experts, uint32_t used, uint32_t devices);

struct GraphOptions {
  uint64_t max_context = 0;           // sizes the KV cache
  uint64_t cost_context = 0;          // the context predicted times assume
  std::vector<uint32_t> prefill_buckets = {16, 128, 512, 2048};  // upper bounds, ascending
  uint32_t mtp_depth = 1;
  DType kv_dtype = DType::F32;
  ParallelOptions par;
};

struct OpGraph {
  std::vector<GraphBuffer> buffers;   // id = index
  std::vector<PhaseGraph> phases;
};

OpGraph build_op_graph(const Model& model, const GraphOptions& opts);

// Bytes of the persistent per-layer state (raw ring, compressed rows, index keys,
// compressor state) for a context of `context` tokens: the KV cache.
struct KvSizes {
  uint32_t layer = 0;
  uint32_t ratio = 0;
  uint32_t raw_rows = 0;
  uint64_t compressed_rows = 0, index_rows = 0;
  uint64_t raw_bytes = 0, compressed_bytes = 0, index_bytes = 0, state_bytes = 0;
  uint64_t total() const { return raw_bytes + compressed_bytes + index_bytes + state_bytes; }
};
// Trunk layers, then the MTP block (raw ring only) when the model has one.
std::vector<KvSizes> kv_sizes(const ModelConfig& c, bool has_mtp, uint64_t context, DType kv_dtype);

}  // namespace fp
