// The CUDA executor (see executor.h): buffers, the op methods in the CPU executor's
// order, the output head, the decode graph, and the dispatch of product nodes by the
// plan's kernel ids.
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
#include "runtime/cpu/executor.h"  // rope_params: one definition of the per-layer RoPE
#include "runtime/cuda/executor.h"

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
  int64_t max_rows = 0;
  float* ape = nullptr;  // [ratio][width] f32 copy of the ape tensor
};

struct LayerState {
  LayerKind kind = LayerKind::SWA;
  int64_t ratio = 0;
  float* raw = nullptr;
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
  // Captured step graphs, one per shape bucket (tokens in the step, first logit row,
  // logits wanted, how the step samples): the decode step is (1, 0, yes, none / greedy /
  // sample), a full prefill chunk (S, S, no, none).
  struct StepGraph {
    int64_t uses = 0;
    cudaGraphExec_t exec = nullptr;
  };
  std::map<std::tuple<int64_t, int64_t, bool, int>, StepGraph> graphs;
  static constexpr int kMaxGraphs = 8;
  int n_graphs = 0;
  std::unique_ptr<CublasGemm> gemm;
  const ProductKernels::Phase* phase = nullptr;  // the plan's choices for the running step

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
  int32_t *ids, *isel, *nsel;
  double* iscores = nullptr;
  int64_t idx_max_rows = 0;
  LinearWorkspace lin;

  std::vector<LayerState> layers;
  uint64_t state_bytes = 0;  // KV rings, compressor rings and rows

  Impl(const ModelConfig& c_, const cpu::ModelW& w_, const ExecutorOptions& o_) : c(c_), w(w_), o(o_) {}
  ~Impl() {
    for (auto& [k, g] : graphs)
      if (g.exec) cudaGraphExecDestroy(g.exec);
    gemm.reset();
    if (h_tokens) cudaFreeHost(h_tokens);
    if (h_pos) cudaFreeHost(h_pos);
    if (h_err) cudaFreeHost(h_err);
    if (h_logits) cudaFreeHost(h_logits);
    if (h_sample) cudaFreeHost(h_sample);
    if (h_token) cudaFreeHost(h_token);
    if (stream) cudaStreamDestroy(stream);
  }

  void setup();
  CompState make_comp(int64_t ratio, int64_t dim, const ref::Weight& ape);
  RopeTab upload_rope(const ref::Rope& r);
  const RopeTab& tab_for(const cpu::LayerW& L) const { return L.ratio == 0 ? tab_main : tab_comp; }

  // ---- one method per op kind (the CPU executor's names) ------------------------
  void embed(int64_t n);
  void hc_pre(const ref::Weight& fn, const float* scale, const float* base, int64_t n);
  void rms_norm(const float* x, const float* wt, float* y, int64_t n, int64_t dim);
  void matmul(const ref::Weight& wt, const float* x, int64_t n, float* y);
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
  void swiglu(float limit, int64_t n_values);
  void add(int64_t n);
  void output_hc_head(int64_t row0, int64_t n);
  void sample_last_row(int64_t rows);

  LinearPath path(const ref::Weight& wt) const;
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

CompState Executor::Impl::make_comp(int64_t ratio, int64_t dim, const ref::Weight& ape) {
  CompState cs;
  cs.shape = {ratio, dim};
  const int64_t wd = cs.shape.width();
  cs.cap = compressor_ring_min(cs.shape, S);
  cs.ring_kv = arena.alloc<float>(cs.cap * wd, "compressor ring");
  cs.ring_score = arena.alloc<float>(cs.cap * wd, "compressor ring");
  cs.max_rows = (o.max_context + ratio - 1) / ratio;
  cs.rows = arena.alloc<float>(cs.max_rows * dim, "compressed rows");
  state_bytes += uint64_t(2 * cs.cap * wd + cs.max_rows * dim) * sizeof(float);
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

  int64_t ff_sh = 0, ff_exp = 0, max_cols = 0;
  for (const auto& L : w.layers) {
    ff_sh = std::max(ff_sh, L.gate_sh.rows);
    ff_exp = std::max(ff_exp, L.gate_exps.rows);
    for (const ref::Weight* m : {&L.q_a, &L.q_b, &L.kv, &L.out_b, &L.comp_kv, &L.comp_gate, &L.idx_q_b, &L.idx_proj,
                                 &L.idx_comp_kv, &L.idx_comp_gate, &L.gate_inp, &L.gate_sh, &L.up_sh, &L.down_sh})
      if (!m->empty()) max_cols = std::max(max_cols, m->cols);
  }
  max_cols = std::max(max_cols, w.output.cols);
  const int64_t cw = std::max<int64_t>(2 * D, 2 * ID);
  X = arena.alloc<float>(S * hd, "X");
  X2 = arena.alloc<float>(S * hd, "X2");
  x_in = arena.alloc<float>(S * E, "x_in");
  post = arena.alloc<float>(S * hcs.hc, "post");
  comb = arena.alloc<float>(S * hcs.hc * hcs.hc, "comb");
  hc_scratch = arena.alloc<float>(S * (hd + hcs.mix()), "hc scratch");
  h = arena.alloc<float>(S * E, "h");
  qa = arena.alloc<float>(S * QL, "qa");
  q = arena.alloc<float>(S * H * D, "q");
  kv = arena.alloc<float>(S * D, "kv");
  attn = arena.alloc<float>(S * H * D, "attn");
  low = arena.alloc<float>(S * int64_t(c.o_groups) * c.o_lora_rank, "low");
  a = arena.alloc<float>(S * E, "a");
  ckv = arena.alloc<float>(S * cw, "ckv");
  cgate = arena.alloc<float>(S * cw, "cgate");
  iq = arena.alloc<float>(S * std::max<int64_t>(1, IH * ID), "iq");
  iw = arena.alloc<float>(S * std::max<int64_t>(1, IH), "iw");
  u = arena.alloc<float>(S * E, "u");
  rlog = arena.alloc<float>(S * c.n_expert, "router logits");
  wts = arena.alloc<float>(S * K, "router weights");
  ids = arena.alloc<int32_t>(S * K, "expert ids");
  moe = arena.alloc<float>(S * E, "moe");
  sg = arena.alloc<float>(S * ff_sh, "sg");
  su = arena.alloc<float>(S * ff_sh, "su");
  smid = arena.alloc<float>(S * ff_sh, "smid");
  sh = arena.alloc<float>(S * E, "sh");
  f = arena.alloc<float>(S * E, "f");
  z = arena.alloc<float>(S * E, "z");
  logits = arena.alloc<float>(S * V, "logits");
  moe_work = arena.alloc<float>(moe_work_floats(S, K, E, ff_exp), "moe workspace");
  if (S >= kMoeGroupedMinTokens || (o.products && o.products->uses_moe_grouped)) {
    moe_grouped_bytes = moe_grouped_work_bytes(S, K, E, ff_exp, c.n_expert);
    moe_grouped_work = arena.alloc<uint8_t>(moe_grouped_bytes, "moe grouped workspace");
    moe_grouped_init();  // its IQ tables, before any capture
  }
  tokens = arena.alloc<int32_t>(S, "tokens");
  pos = arena.alloc<int64_t>(1, "position");
  err = arena.alloc<uint32_t>(1, "error flags");
  const int64_t topk = std::max<int64_t>(1, c.indexer_top_k);
  isel = arena.alloc<int32_t>(S * topk, "indexer selection");
  nsel = arena.alloc<int32_t>(S, "indexer counts");
  for (const auto& L : w.layers)
    if (L.kind == LayerKind::CSA) idx_max_rows = std::max<int64_t>(idx_max_rows, (o.max_context + L.ratio - 1) / L.ratio);
  iscores = arena.alloc<double>(S * std::max<int64_t>(1, idx_max_rows), "indexer scores");

  // Products: quantised activations (bounded by the largest slot layout), the group
  // table of attn_output_a, and the prefill GEMM for quantised weights.
  const int64_t groups = c.o_groups;
  const int64_t widest = std::max({K * std::max(E, ff_exp), H * D, E, QL, ff_sh, max_cols, int64_t(c.n_expert)});
  lin.qact_bytes = (S * widest + 255) / 256 * 292 + 4096;
  lin.qact = arena.alloc<uint8_t>(lin.qact_bytes, "quantised activations");
  std::vector<int32_t> iota(size_t(S * groups));
  for (size_t i = 0; i < iota.size(); ++i) iota[i] = int32_t(int64_t(i) % groups);
  int32_t* iota_d = arena.alloc<int32_t>(S * groups, "group table");
  ck(cudaMemcpy(iota_d, iota.data(), iota.size() * sizeof(int32_t), cudaMemcpyHostToDevice), "group table");
  lin.iota = iota_d;
  lin.iota_n = S * groups;
  lin.iota_groups = groups;
  lin.exact = o.exact_matmul;
  if (S >= lin.gemm_min_tokens || (o.products && o.products->uses_gemm)) {
    gemm = std::make_unique<CublasGemm>(stream);
    lin.gemm = gemm.get();
    lin.gemm_ws_bytes = linear_gemm_bytes(max_cols, S, lin.gemm_tile_rows);
    lin.gemm_ws = arena.alloc<uint8_t>(lin.gemm_ws_bytes, "gemm workspace");
  }

  // Sequence state.
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    const auto& L = w.layers[l];
    LayerState st;
    st.kind = L.kind;
    st.ratio = L.ratio;
    st.raw_cap = int64_t(c.sliding_window) + S;
    st.raw = arena.alloc<float>(st.raw_cap * D, "raw kv ring");
    state_bytes += uint64_t(st.raw_cap * D) * sizeof(float);
    if (L.kind != LayerKind::SWA) st.attn = make_comp(L.ratio, D, L.comp_ape);
    if (L.kind == LayerKind::CSA) st.index = make_comp(L.ratio, ID, L.idx_comp_ape);
    layers.push_back(st);
  }

  ck(cudaMallocHost(&h_tokens, size_t(S) * sizeof(int32_t)), "pinned tokens");
  ck(cudaMallocHost(&h_pos, sizeof(int64_t)), "pinned position");
  ck(cudaMallocHost(&h_err, sizeof(uint32_t)), "pinned flags");
  ck(cudaMallocHost(&h_logits, size_t(S * V) * sizeof(float)), "pinned logits");
  sample_ws_bytes = sample_workspace_bytes(V);
  sample_ws = arena.alloc<uint8_t>(int64_t(sample_ws_bytes), "sampler workspace");
  d_sample = arena.alloc<SampleDeviceState>(1, "sampler state");
  d_token = arena.alloc<int32_t>(1, "sampled token");
  ck(cudaMallocHost(&h_sample, sizeof(SampleDeviceState)), "pinned sampler state");
  ck(cudaMallocHost(&h_token, sizeof(int32_t)), "pinned token");
  ck(cudaDeviceSynchronize(), "executor setup");
}

// =============================================================================
// Op kinds
// =============================================================================

void Executor::Impl::embed(int64_t n) { fp::cuda::embed(w.token_embd, tokens, n, hcs, X, err, stream); }

void Executor::Impl::hc_pre(const ref::Weight& fn, const float* scale, const float* base, int64_t n) {
  fp::cuda::hc_pre(X, n, fn, scale, base, hcs, x_in, post, comb, hc_scratch, stream);
}

void Executor::Impl::rms_norm(const float* x, const float* wt, float* y, int64_t n, int64_t dim) {
  fp::cuda::rms_norm(x, wt, y, n, dim, c.rms_eps, stream);
}

// The plan's kernel for a product node's matrix in the running step's phase; products
// inside other nodes (compressor, indexer, router) are not product nodes: automatic.
LinearPath Executor::Impl::path(const ref::Weight& wt) const {
  if (!phase) return LinearPath::automatic;
  const auto it = phase->by_weight.find(wt.name);
  if (it == phase->by_weight.end()) return LinearPath::automatic;
  switch (it->second) {
    case ProductKernel::matvec: return LinearPath::matvec;
    case ProductKernel::matvec_xf32: return LinearPath::matvec_xf32;
    case ProductKernel::gemm_dequant_f16: return LinearPath::gemm;
    default: fail(wt.name, ": phase ", phase->name, " names a non-linear kernel for a linear product");
  }
}

ProductKernel Executor::Impl::moe_kernel(const ref::Weight& gate) const {
  if (!phase) return ProductKernel::moe_matvec;  // the only MoE kernel without a plan
  const auto it = phase->by_weight.find(gate.name);
  if (it == phase->by_weight.end()) fail(gate.name, ": the plan's phase ", phase->name, " has no moe node for it");
  return it->second;
}

void Executor::Impl::matmul(const ref::Weight& wt, const float* x, int64_t n, float* y) {
  linear(wt, x, n, y, lin, stream, path(wt));
}

void Executor::Impl::q_head_norm_rope(const RopeTab& t, int64_t n) {
  RopeArgs r;
  r.x = q;
  r.n = n;
  r.heads = H;
  r.head_dim = D;
  r.tab = t;
  r.pos0 = pos;
  r.op = RopeOp::head_norm_rotate;
  r.eps = c.rms_eps;
  rope(r, stream);
}

void Executor::Impl::kv_rope_store(LayerState& st, const RopeTab& t, int64_t n) {
  KvStoreArgs k;
  k.kv = kv;
  k.n = n;
  k.head_dim = D;
  k.raw = st.raw;
  k.raw_cap = st.raw_cap;
  k.tab = t;
  k.pos0 = pos;
  k.official = o.numerics == Numerics::official;
  fp::cuda::kv_rope_store(k, stream);
}

void Executor::Impl::compressor(CompState& cs, const ref::Weight& kv_w, const ref::Weight& gate_w, const float* norm,
                                const RopeTab& t, bool index_keys, int64_t n) {
  matmul(kv_w, h, n, ckv);
  matmul(gate_w, h, n, cgate);
  CompressorArgs ca;
  ca.kv = ckv;
  ca.gate = cgate;
  ca.ape = cs.ape;
  ca.ring_kv = cs.ring_kv;
  ca.ring_score = cs.ring_score;
  ca.cap = cs.cap;
  ca.rows = cs.rows;
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
  fp::cuda::compressor(ca, stream);
}

void Executor::Impl::indexer_topk(const cpu::LayerW& L, LayerState& st, const RopeTab& t, int64_t n) {
  matmul(L.idx_q_b, qa, n, iq);
  matmul(L.idx_proj, h, n, iw);
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
  ia.sel = isel;
  ia.nsel = nsel;
  if (ia.max_rows > idx_max_rows) fail("cuda executor: indexer rows ", ia.max_rows, " beyond the workspace");
  fp::cuda::indexer_topk(ia, stream);
}

void Executor::Impl::attention(const cpu::LayerW& L, LayerState& st, int64_t n) {
  AttentionArgs aa;
  aa.q = q;
  aa.out = attn;
  aa.n = n;
  aa.heads = H;
  aa.head_dim = D;
  aa.raw = st.raw;
  aa.raw_cap = st.raw_cap;
  aa.window = c.sliding_window;
  if (st.kind != LayerKind::SWA) {
    aa.comp = st.attn.rows;
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
  fp::cuda::attention(aa, stream);
}

void Executor::Impl::out_inv_rope(const RopeTab& t, int64_t n) {
  RopeArgs r;
  r.x = attn;
  r.n = n;
  r.heads = H;
  r.head_dim = D;
  r.tab = t;
  r.pos0 = pos;
  r.op = RopeOp::inverse;
  rope(r, stream);
}

void Executor::Impl::grouped_matmul(const ref::Weight& wt, int64_t n) {
  grouped_linear(wt, c.o_groups, attn, n, low, lin, stream, path(wt));
}

void Executor::Impl::hc_post(const float* av, int64_t n) {
  fp::cuda::hc_post(av, X, post, comb, n, hcs, X2, stream);
  std::swap(X, X2);
}

void Executor::Impl::router(const cpu::LayerW& L, int64_t n) {
  matmul(L.gate_inp, u, n, rlog);
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
  fp::cuda::router(r, stream);
}

void Executor::Impl::moe_op(const cpu::LayerW& L, int64_t n) {
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
  if (!phase) {  // no plan: moe() picks (the grouped path for steps of many tokens)
    m.grouped_work = moe_grouped_work;
    m.grouped_work_bytes = moe_grouped_bytes;
    fp::cuda::moe(m, lin, stream);
    return;
  }
  switch (moe_kernel(L.gate_exps)) {
    case ProductKernel::moe_matvec: fp::cuda::moe(m, lin, stream); break;
    case ProductKernel::moe_grouped_mma:
      m.grouped_work = moe_grouped_work;
      m.grouped_work_bytes = moe_grouped_bytes;
      fp::cuda::moe_grouped(m, stream);
      break;
    default: fail(L.gate_exps.name, ": the plan names a non-MoE kernel for an moe node");
  }
}

void Executor::Impl::swiglu(float limit, int64_t n_values) { fp::cuda::swiglu(sg, su, n_values, limit, smid, stream); }

void Executor::Impl::add(int64_t n) { fp::cuda::add(moe, sh, f, n * E, stream); }

void Executor::Impl::output_hc_head(int64_t row0, int64_t n) {
  hc_head(X + row0 * hd, n, w.output_hc_fn, w.output_hc_scale, w.output_hc_base, hcs, z, hc_scratch, stream);
}

// =============================================================================
// Node order (as runtime/cpu/executor.cpp)
// =============================================================================

void Executor::Impl::layer(const cpu::LayerW& L, LayerState& st, int64_t n) {
  const RopeTab& t = tab_for(L);
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
  matmul(L.gate_sh, u, n, sg);
  matmul(L.up_sh, u, n, su);
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
  phase = nullptr;
  if (o.products) {
    phase = o.products->for_step(n);
    if (!phase) fail("cuda executor: no phase of the plan runs a step of ", n, " tokens");
  }
  ck(cudaMemsetAsync(err, 0, sizeof(uint32_t), stream), "error flags");
  embed(n);
  snapshot();
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    layer(w.layers[l], layers[l], n);
    snapshot();
  }
  if (want_logits && logit_from < n) {
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
    if (sample_mode != kNoSample) sample_last_row(rows);
  }
}

void Executor::Impl::sample_last_row(int64_t rows) {
  const float* last = logits + (rows - 1) * V;
  if (sample_mode == kGreedy)
    argmax_rows(last, 1, V, d_token, stream);
  else
    sample_row(last, V, d_sample, sample_ws, sample_ws_bytes, d_token, stream);
}

// =============================================================================
// Executor
// =============================================================================

Executor::Executor(const ModelConfig& c, const cpu::ModelW& w, const ExecutorOptions& o)
    : impl_(std::make_unique<Impl>(c, w, o)), o_(o) {
  impl_->setup();
}

Executor::~Executor() = default;

uint64_t Executor::device_bytes() const { return impl_->arena.bytes(); }
uint64_t Executor::state_bytes() const { return impl_->state_bytes; }

void Executor::forward(const int32_t* tokens, int64_t n, int64_t pos0, int64_t logit_from, float* out) {
  Impl& m = *impl_;
  if (n <= 0 || n > m.S) fail("cuda forward: step of ", n, " tokens, expected 1..", m.S);
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
  if (tr) {
    tr->after_layer.clear();
    tr->final_hidden.clear();
  }
  // A step shape's first run is eager (it also warms up every launcher's one-time
  // setup); its second captures a graph that every later step of that shape replays
  // (positions and tokens are read from device memory). Traced steps stay eager.
  const int64_t lf = want ? std::min(logit_from, n) : n;
  Impl::StepGraph* sg = nullptr;
  if (o_.graphs && !tr) sg = &m.graphs[{n, lf, want, m.sample_mode}];
  if (sg && !sg->exec && sg->uses >= 1 && m.n_graphs < Impl::kMaxGraphs) {
    cudaGraph_t g = nullptr;
    ck(cudaStreamBeginCapture(m.stream, cudaStreamCaptureModeThreadLocal), "begin capture");
    try {
      m.body(n, lf, want, nullptr);
    } catch (...) {
      cudaStreamEndCapture(m.stream, &g);
      if (g) cudaGraphDestroy(g);
      throw;
    }
    ck(cudaStreamEndCapture(m.stream, &g), "end capture");
    const cudaError_t e = cudaGraphInstantiate(&sg->exec, g, 0);
    cudaGraphDestroy(g);
    ck(e, "graph instantiate");
    ++m.n_graphs;
  }
  if (sg && sg->exec) {
    ck(cudaGraphLaunch(sg->exec, m.stream), "graph launch");
    ++graph_launches_;
  } else {
    m.body(n, lf, want, tr);
  }
  if (sg) ++sg->uses;
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
  if (*m.h_err & kErrTokenRange) fail("cuda forward: a token id outside the vocabulary reached the device");
  if (*m.h_err & kErrContextFull) fail("cuda forward: compressed rows beyond the context (context full)");
  if (rows > 0) std::memcpy(out, m.h_logits, size_t(rows * m.V) * sizeof(float));
}

}  // namespace fp::cuda

namespace fp::cuda {

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
