// The CUDA executor (see executor.h): buffers, the op methods in the CPU executor's
// order, the output head, the node cursor and its graph segments (capture, replay,
// eager), and the dispatch of product nodes by the plan's kernel ids.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <tuple>

#include "ops/attention/attention_cuda.h"
#include "ops/compressor/compressor_cuda.h"
#include "ops/core/error.h"
#include "ops/hc/hc_cuda.h"
#include "ops/indexer/indexer_cuda.h"
#include "ops/linear/linear_cuda.h"
#include "ops/moe/moe_cuda.h"
#include "ops/norm/norm_cuda.h"
#include "ops/quant/quant_cuda.h"
#include "ops/rope/rope_cuda.h"
#include "ops/sample/sample_cuda.h"
#include "planner/graph/op_graph.h"  // pairs_in_one_node: when two products are one node
#include "planner/memory/cuda_buffers.h"
#include "runtime/cpu/executor.h"  // rope_params: one definition of the per-layer RoPE
#include "runtime/cuda/executor.h"
#include "runtime/cuda/nccl_comms.h"

namespace fp::cuda {
namespace {

void ck(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("CUDA error in ", what, ": ", cudaGetErrorString(e));
}

// Device allocations of one executor, freed together.
class Arena {
 public:
  ~Arena() {
    for (void* p : ptrs_) cudaFree(p);
  }
  template <typename T>
  T* alloc(int64_t count, const char* what) {
    void* p = nullptr;
    const size_t bytes = size_t(std::max<int64_t>(count, 1)) * sizeof(T);
    const cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
      cudaGetLastError();  // a failed cudaMalloc is not sticky: clear it so later launches do not report it
      size_t free_b = 0, total_b = 0;
      cudaMemGetInfo(&free_b, &total_b);
      fail("cuda executor: allocating ", what, " (", bytes, " bytes, ", free_b, " free of ", total_b,
           "): ", cudaGetErrorString(e));
    }
    ptrs_.push_back(p);
    bytes_ += bytes;
    ck(cudaMemset(p, 0, bytes), what);
    return static_cast<T*>(p);
  }
  uint64_t bytes() const { return bytes_; }

 private:
  std::vector<void*> ptrs_;
  uint64_t bytes_ = 0;
};

struct CompState {
  ref::CompressorShape shape;
  float* ring_kv = nullptr;
  float* ring_score = nullptr;
  int64_t cap = 0;
  float* rows = nullptr;
  uint16_t* rows16 = nullptr;  // instead of rows: F16 attention rows (ExecutorOptions::kv_f16)
  int64_t max_rows = 0;
  float* ape = nullptr;  // [ratio][width] f32 copy of the ape tensor
};

struct LayerState {
  LayerKind kind = LayerKind::SWA;
  int64_t ratio = 0;
  float* raw = nullptr;
  uint16_t* raw16 = nullptr;  // instead of raw: the ring as F16 (ExecutorOptions::kv_f16)
  int64_t raw_cap = 0;
  CompState attn, index;
};

}  // namespace

struct Executor::Impl {
  const ModelConfig& c;
  const cpu::ModelW& w;
  ExecutorOptions o;
  Arena arena;
  cudaStream_t stream = nullptr;
  // Captured graphs per step shape (tokens in the step, first logit row, logits wanted,
  // how the step samples: the decode step is (1, 0, yes, none / greedy / sampled), a full
  // prefill chunk (S, S, no, none)), one per segment of the shape's phase (nullptr for a
  // segment with graph: false).
  struct StepShape {
    int64_t uses = 0;
    bool captured = false;
    std::vector<cudaGraphExec_t> execs;
  };
  std::map<std::tuple<int64_t, int64_t, bool, int>, StepShape> shapes;
  static constexpr int kMaxShapes = 8;
  static constexpr int kMaxGraphs = 512;
  int n_shapes = 0, n_graphs = 0;
  std::unique_ptr<CublasGemm> gemm;
  const ProductKernels::Phase* phase = nullptr;  // the plan's phase of the running step

  // ---- the node cursor (see executor.h "Graph segments") -------------------------
  // walk: check the order only (at construction); eager: launch every node; capture:
  // capture each graph segment and launch it; replay: launch each graph segment's graph.
  enum class Mode : uint8_t { walk, eager, capture, replay };
  Mode mode = Mode::eager;
  StepShape* shape = nullptr;  // capture / replay
  // Without a plan the whole step is one graph segment.
  const std::vector<ProductKernels::Segment> whole_step{{0, UINT32_MAX, true}};
  const std::vector<ProductKernels::Segment>* segments = &whole_step;
  uint32_t cursor = 0;  // nodes the step has reached
  size_t seg = 0;       // the segment holding the cursor's last node
  bool seg_open = false, capturing = false, skip = false;
  int32_t cur_layer = -1;  // the layer the op methods run (-1: embedding, head)
  // Whether the running node's kernels go with programmatic dependent launch: the plan's
  // Node.overlap_prev (never without a plan). Set by node(); every launcher the node
  // calls gets launch().
  bool overlap = false;
  Launch launch() const { return Launch{stream, overlap}; }
  int64_t graph_launches = 0;
  Executor::StepStats step;

  // Executor::profile while a profiled step runs: an event per launched node.
  Executor::Profile* prof = nullptr;
  std::vector<cudaEvent_t> prof_events;
  void prof_mark(OpKind op, const ref::Weight* wt, const ref::Weight* wt2);
  void prof_collect();

  void begin_step(Mode m, StepShape* sh);
  // wt2: a paired matmul's second weight (checked against the plan's node too).
  bool node(OpKind op, const ref::Weight* w = nullptr, const ref::Weight* wt2 = nullptr);
  void open_segment();
  void close_segment();
  void end_step(bool logits);
  void abandon_step();
  void walk_phases();

  ref::HcShape hcs;
  ref::Rope rope_main, rope_comp;
  RopeTab tab_main, tab_comp;
  int64_t E, D, H, QL, ID, IH, K, V, S, hd;

  // Step inputs and flags.
  int32_t* tokens = nullptr;
  int64_t* pos = nullptr;
  uint32_t* err = nullptr;
  int32_t* h_tokens = nullptr;  // pinned
  int64_t* h_pos = nullptr;     // pinned
  uint32_t* h_err = nullptr;    // pinned
  float* h_logits = nullptr;    // pinned [S][V]

  // Sampling the last logits row on the device (forward_sample): the mode of the running
  // step, the sampler's state (pinned copy + device copy), the token, the workspace.
  enum SampleMode : int { kNoSample = 0, kGreedy = 1, kSampled = 2 };
  int sample_mode = kNoSample;
  SampleDeviceState* d_sample = nullptr;
  SampleDeviceState* h_sample = nullptr;  // pinned
  int32_t* d_token = nullptr;
  int32_t* h_token = nullptr;  // pinned
  uint8_t* sample_ws = nullptr;
  size_t sample_ws_bytes = 0;

  // Activations ([S][...] each).
  float *X, *X2, *x_in, *post, *comb, *hc_scratch, *h, *qa, *q, *kv, *attn, *low, *a;
  float *ckv, *cgate, *iq, *iw, *u, *rlog, *wts, *moe, *sg, *su, *smid, *sh, *f, *z, *logits, *moe_work;
  uint8_t* moe_grouped_work = nullptr;  // cuda.moe.grouped_dequant_mma (steps of many tokens)
  int64_t moe_grouped_bytes = 0;
  float* moe_slots = nullptr;     // multi-GPU, expert_split: [S][K][E] slot outputs
  int32_t* local_ids = nullptr;  // multi-GPU, expert_split: [S][K] this device's expert ids
  int32_t *ids, *isel, *nsel;
  double* iscores = nullptr;
  int64_t idx_max_rows = 0;
  int64_t logit_rows = 0;  // rows of logits a step may return
  LinearWorkspace lin;

  std::vector<LayerState> layers;
  uint64_t state_bytes = 0;  // KV rings, compressor rings and rows

  Impl(const ModelConfig& c_, const cpu::ModelW& w_, const ExecutorOptions& o_) : c(c_), w(w_), o(o_) {}
  ~Impl() {
    for (auto& [k, sh] : shapes)
      for (cudaGraphExec_t e : sh.execs)
        if (e) cudaGraphExecDestroy(e);
    gemm.reset();
    if (h_tokens) cudaFreeHost(h_tokens);
    if (h_pos) cudaFreeHost(h_pos);
    if (h_err) cudaFreeHost(h_err);
    if (h_logits) cudaFreeHost(h_logits);
    if (h_sample) cudaFreeHost(h_sample);
    if (h_token) cudaFreeHost(h_token);
    for (cudaEvent_t e : prof_events) cudaEventDestroy(e);
    if (stream) cudaStreamDestroy(stream);
  }

  void setup();
  void check_memory(const CudaBuffers& B) const;
  CompState make_comp(int64_t ratio, int64_t dim, const ref::Weight& ape, bool f16_rows);
  RopeTab upload_rope(const ref::Rope& r);
  const RopeTab& tab_for(const cpu::LayerW& L) const { return L.ratio == 0 ? tab_main : tab_comp; }

  // ---- one method per op kind (the CPU executor's names) ------------------------
  void embed(int64_t n);
  void hc_pre(const ref::Weight& fn, const float* scale, const float* base, int64_t n);
  void rms_norm(const float* x, const float* wt, float* y, int64_t n, int64_t dim);
  void matmul(const ref::Weight& wt, const float* x, int64_t n, float* y);
  void matmul_pair(const ref::Weight& a, const ref::Weight& b, const float* x, int64_t n, float* ya, float* yb);
  void q_head_norm_rope(const RopeTab& t, int64_t n);
  void kv_rope_store(LayerState& st, const RopeTab& t, int64_t n);
  void compressor(CompState& cs, const ref::Weight& kv_w, const ref::Weight& gate_w, const float* norm,
                  const RopeTab& t, bool index_keys, int64_t n);
  void indexer_topk(const cpu::LayerW& L, LayerState& st, const RopeTab& t, int64_t n);
  void attention(const cpu::LayerW& L, LayerState& st, int64_t n);
  void out_inv_rope(const RopeTab& t, int64_t n);
  void grouped_matmul(const ref::Weight& wt, int64_t n);
  void hc_post(const float* av, int64_t n);
  void router(const cpu::LayerW& L, int64_t n);
  void moe_op(const cpu::LayerW& L, int64_t n);
  void moe_all_reduce(int64_t n);
  void moe_combine(int64_t n);
  void swiglu(float limit, int64_t n_values);
  void add(int64_t n);
  void output_hc_head(int64_t row0, int64_t n);
  void sample_last_row(int64_t rows);

  const ProductChoice* choice(const ref::Weight& wt) const;
  LinearPath path(const ref::Weight& wt) const;
  bool overlap_prev(const ref::Weight& wt);
  ProductKernel moe_kernel(const ref::Weight& gate) const;

  void layer(const cpu::LayerW& L, LayerState& st, int64_t n);
  void body(int64_t n, int64_t logit_from, bool want_logits, Trace* tr);
};

// =============================================================================
// Setup
// =============================================================================

RopeTab Executor::Impl::upload_rope(const ref::Rope& r) {
  double* d = arena.alloc<double>(int64_t(r.inv_freq().size()), "rope table");
  ck(cudaMemcpy(d, r.inv_freq().data(), r.inv_freq().size() * sizeof(double), cudaMemcpyHostToDevice), "rope table");
  return {d, r.n_rot()};
}

CompState Executor::Impl::make_comp(int64_t ratio, int64_t dim, const ref::Weight& ape, bool f16_rows) {
  CompState cs;
  cs.shape = {ratio, dim};
  const int64_t wd = cs.shape.width();
  cs.cap = compressor_ring_min(cs.shape, S);
  cs.ring_kv = arena.alloc<float>(cs.cap * wd, "compressor ring");
  cs.ring_score = arena.alloc<float>(cs.cap * wd, "compressor ring");
  cs.max_rows = (o.max_context + ratio - 1) / ratio;
  state_bytes += uint64_t(2 * cs.cap * wd) * sizeof(float);
  if (f16_rows) {
    cs.rows16 = arena.alloc<uint16_t>(cs.max_rows * dim, "compressed rows (F16)");
    state_bytes += uint64_t(cs.max_rows * dim) * sizeof(uint16_t);
  } else {
    cs.rows = arena.alloc<float>(cs.max_rows * dim, "compressed rows");
    state_bytes += uint64_t(cs.max_rows * dim) * sizeof(float);
  }
  if (ape.rows != ratio || ape.cols != wd)
    fail(ape.name, ": shape [", ape.cols, ", ", ape.rows, "], expected [", wd, ", ", ratio, "]");
  // The pooling adds ape rows to f32 gates: keep an f32 copy (tiny), dequantised on the
  // device by the quant family when the file stores it quantised.
  cs.ape = arena.alloc<float>(ratio * wd, "compressor ape");
  if (ape.type == DType::F32) {
    ck(cudaMemcpy(cs.ape, ape.data, size_t(ratio * wd) * sizeof(float), cudaMemcpyDeviceToDevice), "ape copy");
  } else {
    if (!dequant_supported(ape.type)) fail(ape.name, ": dtype ", dtype_name(ape.type), " cannot be dequantised");
    dequantize(ape.type, ape.data, ratio * wd, cs.ape, stream);
    ck(cudaStreamSynchronize(stream), "ape dequantise");
  }
  return cs;
}

void Executor::Impl::setup() {
  if (o.max_step <= 0 || o.max_context <= 0) fail("cuda executor: max_step ", o.max_step, ", max_context ", o.max_context);
  if (c.n_head_kv != 1) fail("cuda executor: head_count_kv ", c.n_head_kv, ", expected 1");
  if (!attention_supported(c.head_dim)) fail("cuda executor: head_dim ", c.head_dim, " has no attention kernel");
  if (o.products && o.exact_matmul) fail("cuda executor: exact products override a plan's kernels; run one or the other");
  ck(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "stream");
  quant_cuda_init();  // IQ tables uploaded before any capture
  hcs.hc = c.hc_count;
  hcs.dim = c.n_embd;
  hcs.norm_eps = c.rms_eps;
  hcs.hc_eps = c.hc_eps;
  hcs.sinkhorn_iters = c.hc_sinkhorn_iters;
  rope_main = ref::Rope(cpu::rope_params(c, /*compressed=*/false));
  rope_comp = ref::Rope(cpu::rope_params(c, /*compressed=*/true));
  tab_main = upload_rope(rope_main);
  tab_comp = upload_rope(rope_comp);
  E = c.n_embd;
  D = c.head_dim;
  H = c.n_head;
  QL = c.q_lora_rank;
  ID = c.indexer_head_dim;
  IH = c.indexer_heads;
  K = c.n_expert_used;
  V = c.n_vocab;
  S = o.max_step;
  hd = hcs.hc * E;

  CudaBufferOptions bo;
  bo.max_step = S;
  bo.max_context = o.max_context;
  bo.moe_grouped = o.products && o.products->uses_moe_grouped;
  bo.gemm = o.products && o.products->uses_gemm;
  bo.logit_rows = o.logit_rows > 0 ? std::min(o.logit_rows, S) : S;
  bo.expert_split = o.part.expert_split;
  bo.kv_f16 = o.kv_f16;
  logit_rows = bo.logit_rows;
  const CudaBuffers B = cuda_buffers(c, bo);
  check_memory(B);

  int64_t ff_sh = 0, ff_exp = 0, max_cols = 0;
  for (const auto& L : w.layers) {
    ff_sh = std::max(ff_sh, L.gate_sh.rows);
    ff_exp = std::max(ff_exp, L.gate_exps.rows);
    for (const ref::Weight* m : {&L.q_a, &L.q_b, &L.kv, &L.out_b, &L.comp_kv, &L.comp_gate, &L.idx_q_b, &L.idx_proj,
                                 &L.idx_comp_kv, &L.idx_comp_gate, &L.gate_inp, &L.gate_sh, &L.up_sh, &L.down_sh})
      if (!m->empty()) max_cols = std::max(max_cols, m->cols);
  }
  max_cols = std::max(max_cols, w.output.cols);
  // The weights must be no wider than the config says: the table sized every buffer from it.
  if (ff_sh > B.ff_shared || ff_exp > B.ff_expert || max_cols > B.max_cols)
    fail("cuda executor: weight widths (shared expert ", ff_sh, ", expert ", ff_exp, ", inputs ", max_cols,
         ") exceed the config's (", B.ff_shared, ", ", B.ff_expert, ", ", B.max_cols, ")");
  X = arena.alloc<float>(B.X, "X");
  X2 = arena.alloc<float>(B.X, "X2");
  x_in = arena.alloc<float>(B.x_in, "x_in");
  post = arena.alloc<float>(B.post, "post");
  comb = arena.alloc<float>(B.comb, "comb");
  hc_scratch = arena.alloc<float>(B.hc_scratch, "hc scratch");
  h = arena.alloc<float>(B.h, "h");
  qa = arena.alloc<float>(B.qa, "qa");
  q = arena.alloc<float>(B.q, "q");
  kv = arena.alloc<float>(B.kv, "kv");
  attn = arena.alloc<float>(B.attn, "attn");
  low = arena.alloc<float>(B.low, "low");
  a = arena.alloc<float>(B.a, "a");
  ckv = arena.alloc<float>(B.ckv, "ckv");
  cgate = arena.alloc<float>(B.cgate, "cgate");
  iq = arena.alloc<float>(B.iq, "iq");
  iw = arena.alloc<float>(B.iw, "iw");
  u = arena.alloc<float>(B.u, "u");
  rlog = arena.alloc<float>(B.rlog, "router logits");
  wts = arena.alloc<float>(B.wts, "router weights");
  ids = arena.alloc<int32_t>(B.ids, "expert ids");
  moe = arena.alloc<float>(B.moe, "moe");
  sg = arena.alloc<float>(B.sg, "sg");
  su = arena.alloc<float>(B.su, "su");
  smid = arena.alloc<float>(B.smid, "smid");
  sh = arena.alloc<float>(B.sh, "sh");
  f = arena.alloc<float>(B.f, "f");
  z = arena.alloc<float>(B.z, "z");
  logits = arena.alloc<float>(B.logits, "logits");
  moe_work = arena.alloc<float>(B.moe_work, "moe workspace");
  if (o.part.expert_split) {
    if (!o.part.comms) fail("cuda executor: an expert_split plan without NCCL communicators");
    moe_slots = arena.alloc<float>(B.moe_slots, "moe slot outputs");
    local_ids = arena.alloc<int32_t>(B.local_ids, "local expert ids");
  }
  if (B.moe_grouped_bytes > 0) {
    moe_grouped_bytes = B.moe_grouped_bytes;
    moe_grouped_work = arena.alloc<uint8_t>(moe_grouped_bytes, "moe grouped workspace");
    moe_grouped_init();  // its IQ tables, before any capture
  }
  tokens = arena.alloc<int32_t>(B.tokens, "tokens");
  pos = arena.alloc<int64_t>(1, "position");
  err = arena.alloc<uint32_t>(1, "error flags");
  isel = arena.alloc<int32_t>(B.isel, "indexer selection");
  nsel = arena.alloc<int32_t>(B.nsel, "indexer counts");
  idx_max_rows = B.index_rows;
  iscores = arena.alloc<double>(B.iscores, "indexer scores");

  // Products: quantised activations (bounded by the largest slot layout), the group
  // table of attn_output_a, and the prefill GEMM for quantised weights.
  const int64_t groups = c.o_groups;
  lin.qact_bytes = B.qact_bytes;
  lin.qact = arena.alloc<uint8_t>(lin.qact_bytes, "quantised activations");
  std::vector<int32_t> iota(size_t(B.group_table));
  for (size_t i = 0; i < iota.size(); ++i) iota[i] = int32_t(int64_t(i) % groups);
  int32_t* iota_d = arena.alloc<int32_t>(B.group_table, "group table");
  ck(cudaMemcpy(iota_d, iota.data(), iota.size() * sizeof(int32_t), cudaMemcpyHostToDevice), "group table");
  lin.iota = iota_d;
  lin.iota_n = S * groups;
  lin.iota_groups = groups;
  lin.exact = o.exact_matmul;
  if (B.gemm_bytes > 0) {
    gemm = std::make_unique<CublasGemm>(stream);
    lin.gemm = gemm.get();
    lin.gemm_ws_bytes = B.gemm_bytes;
    lin.gemm_ws = arena.alloc<uint8_t>(lin.gemm_ws_bytes, "gemm workspace");
  }

  // Sequence state.
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    const auto& L = w.layers[l];
    LayerState st;
    st.kind = L.kind;
    st.ratio = L.ratio;
    st.raw_cap = B.layers[l].raw_rows;
    if (o.kv_f16) {
      st.raw16 = arena.alloc<uint16_t>(st.raw_cap * D, "raw kv ring (F16)");
      state_bytes += uint64_t(st.raw_cap * D) * sizeof(uint16_t);
    } else {
      st.raw = arena.alloc<float>(st.raw_cap * D, "raw kv ring");
      state_bytes += uint64_t(st.raw_cap * D) * sizeof(float);
    }
    if (L.kind != LayerKind::SWA) st.attn = make_comp(L.ratio, D, L.comp_ape, o.kv_f16);
    if (L.kind == LayerKind::CSA) st.index = make_comp(L.ratio, ID, L.idx_comp_ape, false);  // indexer keys stay f32
    layers.push_back(st);
  }

  ck(cudaMallocHost(&h_tokens, size_t(S) * sizeof(int32_t)), "pinned tokens");
  ck(cudaMallocHost(&h_pos, sizeof(int64_t)), "pinned position");
  ck(cudaMallocHost(&h_err, sizeof(uint32_t)), "pinned flags");
  ck(cudaMallocHost(&h_logits, size_t(B.logits) * sizeof(float)), "pinned logits");
  // The sampler's workspace: the table holds a CUDA-free bound, CUB's actual need must fit it.
  sample_ws_bytes = sample_workspace_bytes(V);
  if (int64_t(sample_ws_bytes) > B.sample_bytes)
    fail("cuda executor: the sampler needs ", sample_ws_bytes, " bytes of workspace for ", V,
         " logits, the buffer table's bound is ", B.sample_bytes);
  sample_ws = arena.alloc<uint8_t>(B.sample_bytes, "sampler workspace");
  d_sample = arena.alloc<SampleDeviceState>(1, "sampler state");
  d_token = arena.alloc<int32_t>(1, "sampled token");
  ck(cudaMallocHost(&h_sample, sizeof(SampleDeviceState)), "pinned sampler state");
  ck(cudaMallocHost(&h_token, sizeof(int32_t)), "pinned token");
  ck(cudaDeviceSynchronize(), "executor setup");
  // The planner budgeted this table; allocating more than it says would make a plan that
  // fits run out of memory. (tests/gpu checks the two are equal.)
  if (arena.bytes() > B.total_bytes())
    fail("cuda executor: allocated ", arena.bytes(), " bytes, more than the buffer table (planner/memory/cuda_buffers) ",
         "budgets: ", B.total_bytes());
}

void Executor::Impl::check_memory(const CudaBuffers& B) const {
  size_t free_b = 0, total_b = 0;
  ck(cudaMemGetInfo(&free_b, &total_b), "memory info");
  const uint64_t need = B.total_bytes();
  if (o.planned_bytes > 0 && need > o.planned_bytes)
    fail("cuda executor: needs ", need, " bytes (activations ", B.activation_bytes(), ", workspace ",
         B.workspace_bytes(), ", state ", B.state_bytes(), ") for ", S, "-token steps and ", o.max_context,
         " positions; the plan budgets ", o.planned_bytes, ": recompile the plan with this build");
  if (need > free_b)
    fail("cuda executor: out of device memory: activations, workspaces and sequence state need ", need,
         " bytes (activations ", B.activation_bytes(), ", workspace ", B.workspace_bytes(), ", state ",
         B.state_bytes(), ") for ", S, "-token steps and ", o.max_context, " positions; the device has ", free_b,
         " free of ", total_b, " (lower -c/--ctx or --chunk, or compile a plan for this GPU)");
}

// =============================================================================
// Op kinds
// =============================================================================

void Executor::Impl::embed(int64_t n) {
  if (!node(OpKind::embed, &w.token_embd)) return;
  // The step's first node clears the error flags that it and later nodes raise.
  ck(cudaMemsetAsync(err, 0, sizeof(uint32_t), stream), "error flags");
  fp::cuda::embed(w.token_embd, tokens, n, hcs, X, err, launch());
}

void Executor::Impl::hc_pre(const ref::Weight& fn, const float* scale, const float* base, int64_t n) {
  if (!node(OpKind::hc_pre, &fn)) return;
  fp::cuda::hc_pre(X, n, fn, scale, base, hcs, x_in, post, comb, hc_scratch, launch());
}

void Executor::Impl::rms_norm(const float* x, const float* wt, float* y, int64_t n, int64_t dim) {
  if (!node(OpKind::rms_norm)) return;
  fp::cuda::rms_norm(x, wt, y, n, dim, c.rms_eps, launch());
}

// The plan's choice for a product node's matrix in the running step's phase; nullptr
// without a plan or for a matrix no product node names.
const ProductChoice* Executor::Impl::choice(const ref::Weight& wt) const {
  if (!phase) return nullptr;
  const auto it = phase->by_weight.find(wt.name);
  return it == phase->by_weight.end() ? nullptr : &it->second;
}

// The plan's kernel for a product node's matrix (no choice: the linear family's pick).
LinearPath Executor::Impl::path(const ref::Weight& wt) const {
  const ProductChoice* ch = choice(wt);
  if (!ch) return LinearPath::automatic;
  switch (ch->kernel) {
    case ProductKernel::matvec: return LinearPath::matvec;
    case ProductKernel::matvec_xf32: return LinearPath::matvec_xf32;
    case ProductKernel::gemm_dequant_f16: return LinearPath::gemm;
    default: fail(wt.name, ": phase ", phase->name, " names a non-linear kernel for a linear product");
  }
}

// Whether the plan launches this product node's matvec with programmatic dependent
// launch (never without a plan): the node's overlap_prev, as its choice records it.
bool Executor::Impl::overlap_prev(const ref::Weight& wt) {
  const ProductChoice* ch = choice(wt);
  return ch && ch->overlap_prev;
}

ProductKernel Executor::Impl::moe_kernel(const ref::Weight& gate) const {
  if (!phase) return ProductKernel::moe_matvec;  // the only MoE kernel without a plan
  const ProductChoice* ch = choice(gate);
  if (!ch) fail(gate.name, ": the plan's phase ", phase->name, " has no moe node for it");
  return ch->kernel;
}

void Executor::Impl::matmul(const ref::Weight& wt, const float* x, int64_t n, float* y) {
  if (!node(OpKind::matmul, &wt)) return;
  linear(wt, x, n, y, lin, stream, path(wt), overlap_prev(wt));
}

// Two products of x: one node and one linear_pair call when the weights have one type and
// shape (the op graph's rule, so with or without a plan the same), else two matmul nodes.
// The plan lists both weights under the node's kernel; the first one's path is the pair's.
void Executor::Impl::matmul_pair(const ref::Weight& a, const ref::Weight& b, const float* x, int64_t n, float* ya,
                                 float* yb) {
  if (!pairs_in_one_node(a.type, a.cols, a.rows, b.type, b.cols, b.rows)) {
    matmul(a, x, n, ya);
    matmul(b, x, n, yb);
    return;
  }
  if (!node(OpKind::matmul, &a, &b)) return;
  linear_pair(a, b, x, n, ya, yb, lin, stream, path(a), overlap_prev(a));
}

void Executor::Impl::q_head_norm_rope(const RopeTab& t, int64_t n) {
  if (!node(OpKind::q_head_norm_rope)) return;
  RopeArgs r;
  r.x = q;
  r.n = n;
  r.heads = H;
  r.head_dim = D;
  r.tab = t;
  r.pos0 = pos;
  r.op = RopeOp::head_norm_rotate;
  r.eps = c.rms_eps;
  rope(r, launch());
}

void Executor::Impl::kv_rope_store(LayerState& st, const RopeTab& t, int64_t n) {
  if (!node(OpKind::kv_rope_store)) return;
  KvStoreArgs k;
  k.kv = kv;
  k.n = n;
  k.head_dim = D;
  k.raw = st.raw;
  k.raw16 = st.raw16;
  k.raw_cap = st.raw_cap;
  k.tab = t;
  k.pos0 = pos;
  k.official = o.numerics == Numerics::official;
  fp::cuda::kv_rope_store(k, launch());
}

void Executor::Impl::compressor(CompState& cs, const ref::Weight& kv_w, const ref::Weight& gate_w, const float* norm,
                                const RopeTab& t, bool index_keys, int64_t n) {
  matmul_pair(kv_w, gate_w, h, n, ckv, cgate);
  if (!node(OpKind::compressor)) return;
  CompressorArgs ca;
  ca.kv = ckv;
  ca.gate = cgate;
  ca.ape = cs.ape;
  ca.ring_kv = cs.ring_kv;
  ca.ring_score = cs.ring_score;
  ca.cap = cs.cap;
  ca.rows = cs.rows;
  ca.rows16 = cs.rows16;
  ca.max_rows = cs.max_rows;
  ca.shape = cs.shape;
  ca.n = n;
  ca.norm = norm;
  ca.eps = c.rms_eps;
  ca.tab = t;
  ca.pos0 = pos;
  ca.official = o.numerics == Numerics::official;
  ca.index_keys = index_keys;
  ca.err = err;
  fp::cuda::compressor(ca, launch());
}

void Executor::Impl::indexer_topk(const cpu::LayerW& L, LayerState& st, const RopeTab& t, int64_t n) {
  matmul(L.idx_q_b, qa, n, iq);
  matmul(L.idx_proj, h, n, iw);
  if (!node(OpKind::indexer_topk)) return;
  IndexerArgs ia;
  ia.q = iq;
  ia.w = iw;
  ia.n = n;
  ia.heads = IH;
  ia.dim = ID;
  ia.keys = st.index.rows;
  ia.max_rows = st.index.max_rows;
  ia.ratio = st.ratio;
  ia.topk = c.indexer_top_k;
  ia.tab = t;
  ia.pos0 = pos;
  ia.official = o.numerics == Numerics::official;
  ia.scores = iscores;
  if (ia.max_rows > idx_max_rows) fail("cuda executor: indexer rows ", ia.max_rows, " beyond the workspace");
  // In tiles of kIndexerTileTokens tokens: the score workspace holds one tile's rows.
  for (int64_t t0 = 0; t0 < n; t0 += kIndexerTileTokens) {
    IndexerArgs tile = ia;
    tile.t0 = t0;
    tile.n = std::min(kIndexerTileTokens, n - t0);
    tile.q = iq + t0 * IH * ID;
    tile.w = iw + t0 * IH;
    tile.sel = isel + t0 * c.indexer_top_k;
    tile.nsel = nsel + t0;
    fp::cuda::indexer_topk(tile, launch());
  }
}

void Executor::Impl::attention(const cpu::LayerW& L, LayerState& st, int64_t n) {
  if (!node(OpKind::attention)) return;
  AttentionArgs aa;
  aa.q = q;
  aa.out = attn;
  aa.n = n;
  aa.heads = H;
  aa.head_dim = D;
  aa.raw = st.raw;
  aa.raw16 = st.raw16;
  aa.raw_cap = st.raw_cap;
  aa.window = c.sliding_window;
  if (st.kind != LayerKind::SWA) {
    aa.comp = st.attn.rows;
    aa.comp16 = st.attn.rows16;
    aa.ratio = st.ratio;
    aa.max_rows = st.attn.max_rows;
  }
  if (st.kind == LayerKind::CSA) {
    aa.sel = isel;
    aa.nsel = nsel;
    aa.topk = c.indexer_top_k;
  }
  aa.sinks = L.sinks;
  aa.scale = float(1.0 / std::sqrt(double(D)));
  aa.pos0 = pos;
  // The plan's kernel: tensor cores for prefill steps; without a plan, the CUDA-core one.
  if (phase && phase->nodes[cursor - 1].attention_tc) {
    fp::cuda::attention_prefill_tc(aa, launch());
  } else {
    fp::cuda::attention(aa, launch());
  }
}

void Executor::Impl::out_inv_rope(const RopeTab& t, int64_t n) {
  if (!node(OpKind::out_inv_rope)) return;
  RopeArgs r;
  r.x = attn;
  r.n = n;
  r.heads = H;
  r.head_dim = D;
  r.tab = t;
  r.pos0 = pos;
  r.op = RopeOp::inverse;
  rope(r, launch());
}

void Executor::Impl::grouped_matmul(const ref::Weight& wt, int64_t n) {
  if (!node(OpKind::grouped_matmul, &wt)) return;
  grouped_linear(wt, c.o_groups, attn, n, low, lin, stream, path(wt), overlap_prev(wt));
}

void Executor::Impl::hc_post(const float* av, int64_t n) {
  if (node(OpKind::hc_post)) fp::cuda::hc_post(av, X, post, comb, n, hcs, X2, launch());
  std::swap(X, X2);  // also when replayed or walked: later nodes (and graphs) address the new X
}

void Executor::Impl::router(const cpu::LayerW& L, int64_t n) {
  matmul(L.gate_inp, u, n, rlog);
  if (!node(OpKind::router)) return;
  RouterArgs r;
  r.logits = rlog;
  r.n = n;
  r.n_expert = c.n_expert;
  r.k = K;
  if (L.hash) {
    r.tid2eid = L.tid2eid;
    r.n_vocab = V;
    r.tokens = tokens;
  } else {
    r.bias = L.exp_bias;
  }
  r.normalise = c.expert_weights_norm;
  r.scale = c.expert_weights_scale;
  r.ids = ids;
  r.weights = wts;
  r.err = err;
  fp::cuda::router(r, launch());
}

void Executor::Impl::moe_op(const cpu::LayerW& L, int64_t n) {
  if (!node(OpKind::moe, &L.gate_exps)) return;
  MoeArgs m;
  m.u = u;
  m.n = n;
  m.k = K;
  m.ids = ids;
  m.weights = wts;
  m.gate = L.gate_exps;
  m.up = L.up_exps;
  m.down = L.down_exps;
  m.limit = L.clamp_exp;
  m.out = moe;
  m.work = moe_work;
  if (o.part.expert_split) {  // this device's slots only; the all-reduce and the combine follow
    m.slots = moe_slots;
    m.local_ids = local_ids;
    m.expert_first = o.part.expert_first;
  }
  if (!phase) {  // no plan: moe() picks (the grouped path for steps of many tokens)
    m.grouped_work = moe_grouped_work;
    m.grouped_work_bytes = moe_grouped_bytes;
    fp::cuda::moe(m, lin, launch());
    return;
  }
  switch (moe_kernel(L.gate_exps)) {
    case ProductKernel::moe_matvec: fp::cuda::moe(m, lin, launch()); break;
    case ProductKernel::moe_grouped_mma:
      m.grouped_work = moe_grouped_work;
      m.grouped_work_bytes = moe_grouped_bytes;
      fp::cuda::moe_grouped(m, launch());
      break;
    default: fail(L.gate_exps.name, ": the plan names a non-MoE kernel for an moe node");
  }
}

// Multi-GPU: every device's slot outputs summed over the devices (exact: one non-zero
// contributor per element), then weighed in slot order as one GPU's moe does.
void Executor::Impl::moe_all_reduce(int64_t n) {
  if (node(OpKind::all_reduce)) o.part.comms->all_reduce_sum(o.part.rank, moe_slots, size_t(n * K * E), stream);
}

void Executor::Impl::moe_combine(int64_t n) {
  if (node(OpKind::moe_combine)) fp::cuda::moe_combine(moe_slots, wts, n, K, E, moe, launch());
}

void Executor::Impl::swiglu(float limit, int64_t n_values) {
  if (node(OpKind::swiglu)) fp::cuda::swiglu(sg, su, n_values, limit, smid, launch());
}

void Executor::Impl::add(int64_t n) {
  if (node(OpKind::add)) fp::cuda::add(moe, sh, f, n * E, launch());
}

void Executor::Impl::output_hc_head(int64_t row0, int64_t n) {
  if (!node(OpKind::output_hc_head, &w.output_hc_fn)) return;
  hc_head(X + row0 * hd, n, w.output_hc_fn, w.output_hc_scale, w.output_hc_base, hcs, z, hc_scratch, launch());
}

// =============================================================================
// Node order (as runtime/cpu/executor.cpp)
// =============================================================================

void Executor::Impl::layer(const cpu::LayerW& L, LayerState& st, int64_t n) {
  const RopeTab& t = tab_for(L);
  cur_layer = int32_t(L.index);
  // ---- attention sub-layer
  hc_pre(L.hc_attn_fn, L.hc_attn_scale, L.hc_attn_base, n);
  rms_norm(x_in, L.attn_norm, h, n, E);
  matmul(L.q_a, h, n, qa);
  rms_norm(qa, L.q_a_norm, qa, n, QL);
  matmul(L.q_b, qa, n, q);
  q_head_norm_rope(t, n);
  matmul(L.kv, h, n, kv);
  rms_norm(kv, L.kv_norm, kv, n, D);
  kv_rope_store(st, t, n);
  if (st.kind != LayerKind::SWA) compressor(st.attn, L.comp_kv, L.comp_gate, L.comp_norm, t, false, n);
  if (st.kind == LayerKind::CSA) {
    compressor(st.index, L.idx_comp_kv, L.idx_comp_gate, L.idx_comp_norm, t, true, n);
    indexer_topk(L, st, t, n);
  }
  attention(L, st, n);
  out_inv_rope(t, n);
  grouped_matmul(L.out_a, n);
  matmul(L.out_b, low, n, a);
  hc_post(a, n);
  // ---- FFN sub-layer
  hc_pre(L.hc_ffn_fn, L.hc_ffn_scale, L.hc_ffn_base, n);
  rms_norm(x_in, L.ffn_norm, u, n, E);
  router(L, n);
  moe_op(L, n);
  if (o.part.expert_split) {
    moe_all_reduce(n);
    moe_combine(n);
  }
  matmul_pair(L.gate_sh, L.up_sh, u, n, sg, su);
  swiglu(L.clamp_shexp, n * L.gate_sh.rows);
  matmul(L.down_sh, smid, n, sh);
  add(n);
  hc_post(f, n);
}

void Executor::Impl::body(int64_t n, int64_t logit_from, bool want_logits, Trace* tr) {
  auto snapshot = [&] {
    if (!tr) return;
    std::vector<float> v(size_t(n * hd));
    ck(cudaMemcpyAsync(v.data(), X, v.size() * sizeof(float), cudaMemcpyDeviceToHost, stream), "trace");
    ck(cudaStreamSynchronize(stream), "trace");
    tr->after_layer.push_back(std::move(v));
  };
  cur_layer = -1;
  embed(n);
  snapshot();
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    layer(w.layers[l], layers[l], n);
    snapshot();
  }
  cur_layer = -1;
  const bool head = want_logits && logit_from < n;
  if (head) {
    const int64_t rows = n - logit_from;
    output_hc_head(logit_from, rows);
    rms_norm(z, w.output_norm, z, rows, E);
    if (tr) {
      tr->final_hidden.resize(size_t(rows * E));
      ck(cudaMemcpyAsync(tr->final_hidden.data(), z, tr->final_hidden.size() * sizeof(float), cudaMemcpyDeviceToHost,
                         stream),
         "trace");
      ck(cudaStreamSynchronize(stream), "trace");
    }
    matmul(w.output, z, rows, logits);
    // The plan's sample node: argmax or the sampler on the last row when the session
    // samples on the device (forward_sample), nothing when it reads the logits.
    if (node(OpKind::sample) && sample_mode != kNoSample) sample_last_row(rows);
  }
  end_step(head);
}

// =============================================================================
// The node cursor: segments captured, replayed or run eagerly
// =============================================================================

void Executor::Impl::begin_step(Mode m, StepShape* sh) {
  mode = m;
  shape = sh;
  segments = phase ? &phase->segments : &whole_step;
  cursor = 0;
  seg = 0;
  seg_open = capturing = skip = false;
  step = {};
}

// Called by every op method before it launches: closes the segment that ended before it
// and opens the one it starts; when walking (at construction), checks that the method is
// the plan's next node (the order does not change between steps, so steps do not
// re-check it). Returns whether the method launches its kernels (not when walking, nor
// when its segment's graph was launched instead).
bool Executor::Impl::node(OpKind op, const ref::Weight* wt, const ref::Weight* wt2) {
  if (phase && mode == Mode::walk) {
    const std::string d = phase->walk_difference(cursor, op, cur_layer, wt ? std::string_view(wt->name) : std::string_view(),
                                                 wt2 ? std::string_view(wt2->name) : std::string_view());
    if (!d.empty()) fail("cuda executor: ", d);
  }
  if (seg_open && uint64_t(cursor) == uint64_t((*segments)[seg].first) + (*segments)[seg].count) {
    close_segment();
    ++seg;
  }
  if (!seg_open) open_segment();
  // A profile captured with its events in the graph runs without PDL (see Profile).
  overlap = phase && cursor < phase->nodes.size() && phase->nodes[cursor].overlap_prev && !(prof && capturing);
  ++cursor;
  if (mode == Mode::walk || skip) return false;
  if (!capturing) ++step.eager_nodes;
  if (overlap) ++step.overlap_nodes;
  if (prof) prof_mark(op, wt, wt2);
  return true;
}

// Records the event that opens a profiled node (events are made as the step first needs
// them, then reused: a profiled step is eager, never captured).
void Executor::Impl::prof_mark(OpKind op, const ref::Weight* wt, const ref::Weight* wt2) {
  const size_t i = prof->nodes.size();
  while (prof_events.size() < i + 2) {  // this node's event and the step's closing one
    cudaEvent_t e = nullptr;
    ck(cudaEventCreate(&e), "profile event");
    prof_events.push_back(e);
  }
  // Inside a capture the event becomes an event record node of the graph (timed when the
  // graph runs); a plain record there would only order the capture.
  ck(cudaEventRecordWithFlags(prof_events[i], stream, capturing ? cudaEventRecordExternal : cudaEventRecordDefault),
     "profile event");
  Executor::NodeTime t;
  t.op = op;
  t.layer = cur_layer;
  if (wt) {
    t.weight = wt->name;
    t.type = wt->type;
    t.rows = wt->rows;
    t.cols = wt->cols;
    t.experts = wt->experts;
    t.products = wt2 ? 2 : 1;
  }
  prof->nodes.push_back(std::move(t));
}

// After the step synchronised: each node's time, from its event to the next one.
void Executor::Impl::prof_collect() {
  auto& nodes = prof->nodes;
  for (size_t i = 0; i < nodes.size(); ++i) {
    float ms = 0;
    ck(cudaEventElapsedTime(&ms, prof_events[i], prof_events[i + 1]), "profile elapsed time");
    nodes[i].us = 1e3 * double(ms);
  }
}

void Executor::Impl::open_segment() {
  if (seg >= segments->size()) fail("cuda executor: node ", cursor, " lies beyond the phase's segments");
  seg_open = true;
  skip = false;
  if (!(*segments)[seg].graph || mode == Mode::walk || mode == Mode::eager) return;
  if (mode == Mode::replay) {
    cudaGraphExec_t e = shape->execs[seg];
    if (!e) fail("cuda executor: segment ", seg, " of this step shape was not captured");
    ck(cudaGraphLaunch(e, stream), "graph launch");
    ++graph_launches;
    ++step.graph_launches;
    skip = true;
    return;
  }
  ck(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "begin capture");
  capturing = true;
}

// Ends the open segment; a captured one becomes its graph and runs (the capture only
// recorded its kernels).
void Executor::Impl::close_segment() {
  seg_open = skip = false;
  if (!capturing) return;
  capturing = false;
  cudaGraph_t g = nullptr;
  ck(cudaStreamEndCapture(stream, &g), "end capture");
  cudaGraphExec_t& e = shape->execs[seg];
  const cudaError_t r = cudaGraphInstantiate(&e, g, 0);
  cudaGraphDestroy(g);
  ck(r, "graph instantiate");
  ++n_graphs;
  ck(cudaGraphLaunch(e, stream), "graph launch");
  ++graph_launches;
  ++step.graph_launches;
}

void Executor::Impl::end_step(bool logits) {
  if (seg_open) close_segment();
  if (prof && !prof->nodes.empty()) ck(cudaEventRecord(prof_events[prof->nodes.size()], stream), "profile event");
  if (!phase) return;
  const std::string d = phase->walk_end_difference(cursor, logits);
  if (!d.empty()) fail("cuda executor: ", d);
}

// A step that threw: end a capture in progress and drop the shape's partial graphs, so
// the next use captures it again.
void Executor::Impl::abandon_step() {
  if (capturing) {
    cudaGraph_t g = nullptr;
    cudaStreamEndCapture(stream, &g);
    if (g) cudaGraphDestroy(g);
  }
  seg_open = capturing = skip = false;
  if (mode != Mode::capture || !shape) return;
  cudaStreamSynchronize(stream);
  for (cudaGraphExec_t& e : shape->execs)
    if (e) {
      cudaGraphExecDestroy(e);
      e = nullptr;
      --n_graphs;
    }
}

// Every phase the executor can run, walked once with and once without the head: the
// op methods' order against the plan's node lists, before any step.
void Executor::Impl::walk_phases() {
  if (!o.products) return;
  for (const ProductKernels::Phase& ph : o.products->phases) {
    if (ph.min_tokens > uint32_t(S)) continue;  // steps this executor never runs
    const int64_t n = std::min<int64_t>(ph.max_tokens, S);
    phase = &ph;
    for (bool logits : {true, false}) {
      begin_step(Mode::walk, nullptr);
      body(n, logits ? n - 1 : n, logits, nullptr);
    }
  }
  phase = nullptr;
}

void Executor::Impl::sample_last_row(int64_t rows) {
  const float* last = logits + (rows - 1) * V;
  if (sample_mode == kGreedy)
    argmax_rows(last, 1, V, d_token, launch());
  else
    sample_row(last, V, d_sample, sample_ws, sample_ws_bytes, d_token, launch());
}

// =============================================================================
// Executor
// =============================================================================

Executor::Executor(const ModelConfig& c, const cpu::ModelW& w, const ExecutorOptions& o)
    : impl_(std::make_unique<Impl>(c, w, o)), o_(o) {
  impl_->setup();
  impl_->walk_phases();
}

Executor::~Executor() = default;

uint64_t Executor::device_bytes() const { return impl_->arena.bytes(); }
uint64_t Executor::state_bytes() const { return impl_->state_bytes; }
int64_t Executor::logit_rows() const { return impl_->logit_rows; }
int64_t Executor::graph_launches() const { return impl_->graph_launches; }
Executor::StepStats Executor::last_step() const { return impl_->step; }

void Executor::forward(const int32_t* tokens, int64_t n, int64_t pos0, int64_t logit_from, float* out) {
  Impl& m = *impl_;
  if (n <= 0 || n > m.S) fail("cuda forward: step of ", n, " tokens, expected 1..", m.S);
  if (out && n - std::min(logit_from, n) > m.logit_rows)
    fail("cuda forward: logits of ", n - std::min(logit_from, n), " rows asked, the executor holds ", m.logit_rows);
  if (pos0 < 0 || pos0 + n > o_.max_context)
    fail("cuda forward: positions ", pos0, "..", pos0 + n - 1, " exceed the context of ", o_.max_context);
  for (int64_t t = 0; t < n; ++t)
    if (tokens[t] < 0 || tokens[t] >= m.V)
      fail("token id ", tokens[t], " at step row ", t, ": outside the vocabulary [0, ", m.V, ")");
  std::memcpy(m.h_tokens, tokens, size_t(n) * sizeof(int32_t));
  *m.h_pos = pos0;
  ck(cudaMemcpyAsync(m.tokens, m.h_tokens, size_t(n) * sizeof(int32_t), cudaMemcpyHostToDevice, m.stream), "tokens");
  ck(cudaMemcpyAsync(m.pos, m.h_pos, sizeof(int64_t), cudaMemcpyHostToDevice, m.stream), "position");
  const bool want = out != nullptr || m.sample_mode != Impl::kNoSample;
  Trace* tr = trace.enabled ? &trace : nullptr;
  m.prof = profile.enabled ? &profile : nullptr;
  if (m.prof) m.prof->nodes.clear();
  if (tr) {
    tr->after_layer.clear();
    tr->final_hidden.clear();
  }
  m.phase = nullptr;
  if (o_.products) {
    m.phase = o_.products->for_step(n);
    if (!m.phase) fail("cuda forward: no phase of the plan runs a step of ", n, " tokens");
  }
  // A step shape's first run is eager (it also warms up every launcher's one-time
  // setup); its second captures each graph segment of its phase, and every later step
  // of that shape replays them (positions and tokens are read from device memory).
  // Traced and profiled steps stay eager.
  const int64_t lf = want ? std::min(logit_from, n) : n;
  Impl::StepShape* sh = nullptr;
  if (o_.graphs && !tr && !m.prof) sh = &m.shapes[{n, lf, want, m.sample_mode}];
  // A profile in the graph captures the step into a shape of its own, dropped afterwards.
  Impl::StepShape prof_shape;
  const int graphs_before = m.n_graphs;
  const bool prof_graph = m.prof && m.prof->in_graph && o_.graphs && !tr;
  Impl::Mode mode = Impl::Mode::eager;
  if (prof_graph) {
    if (!m.shapes.count({n, lf, want, m.sample_mode}))
      fail("cuda profile in the graph: a step of ", n, " tokens has not run yet; run one eagerly first (launchers' "
           "one-time set-up cannot be captured)");
    sh = &prof_shape;
    mode = Impl::Mode::capture;
    sh->execs.assign((m.phase ? m.phase->segments : m.whole_step).size(), nullptr);
  } else if (sh && sh->captured) {
    mode = Impl::Mode::replay;
  } else if (sh && sh->uses >= 1 && m.n_shapes < Impl::kMaxShapes) {
    const auto& segs = m.phase ? m.phase->segments : m.whole_step;
    int graphs = 0;
    for (const auto& s : segs) graphs += s.graph;
    if (m.n_graphs + graphs <= Impl::kMaxGraphs) {
      mode = Impl::Mode::capture;
      sh->execs.assign(segs.size(), nullptr);
    }
  }
  m.begin_step(mode, sh);
  try {
    m.body(n, lf, want, tr);
  } catch (...) {
    m.abandon_step();  // drops the capture's graphs, the profile's own included
    throw;
  }
  if (prof_graph) {
    // Its graphs have run (each segment launches once it is captured); nothing replays them.
  } else if (mode == Impl::Mode::capture) {
    sh->captured = true;
    ++m.n_shapes;
  }
  if (sh) ++sh->uses;
  const int64_t rows = out && logit_from < n ? n - logit_from : 0;
  if (rows > 0)
    ck(cudaMemcpyAsync(m.h_logits, m.logits, size_t(rows * m.V) * sizeof(float), cudaMemcpyDeviceToHost, m.stream),
       "logits");
  if (m.sample_mode != Impl::kNoSample) {
    ck(cudaMemcpyAsync(m.h_token, m.d_token, sizeof(int32_t), cudaMemcpyDeviceToHost, m.stream), "sampled token");
    if (m.sample_mode == Impl::kSampled)
      ck(cudaMemcpyAsync(&m.h_sample->rng, &m.d_sample->rng, sizeof(RngState), cudaMemcpyDeviceToHost, m.stream),
         "sampler state");
  }
  ck(cudaMemcpyAsync(m.h_err, m.err, sizeof(uint32_t), cudaMemcpyDeviceToHost, m.stream), "error flags");
  ck(cudaStreamSynchronize(m.stream), "forward step");
  if (prof_graph) {  // the profile's own capture goes with the step
    for (cudaGraphExec_t& e : prof_shape.execs)
      if (e) cudaGraphExecDestroy(e);
    m.n_graphs = graphs_before;
  }
  if (m.prof) m.prof_collect();
  if (*m.h_err & kErrTokenRange) fail("cuda forward: a token id outside the vocabulary reached the device");
  if (*m.h_err & kErrContextFull) fail("cuda forward: compressed rows beyond the context (context full)");
  if (rows > 0) std::memcpy(out, m.h_logits, size_t(rows * m.V) * sizeof(float));
}

int32_t Executor::forward_sample(const int32_t* tokens, int64_t n, int64_t pos0, SampleDeviceState* state) {
  Impl& m = *impl_;
  if (state) {
    check_sample_params(state->params);
    *m.h_sample = *state;
    ck(cudaMemcpyAsync(m.d_sample, m.h_sample, sizeof(SampleDeviceState), cudaMemcpyHostToDevice, m.stream),
       "sampler state");
  }
  m.sample_mode = state ? Impl::kSampled : Impl::kGreedy;
  try {
    forward(tokens, n, pos0, n - 1, nullptr);
  } catch (...) {
    m.sample_mode = Impl::kNoSample;
    throw;
  }
  m.sample_mode = Impl::kNoSample;
  if (state) state->rng = m.h_sample->rng;
  const int32_t t = *m.h_token;
  if (t < 0 || t >= m.V) fail("cuda forward: the device sampler returned token ", t, ", outside [0, ", m.V, ")");
  return t;
}

}  // namespace fp::cuda
