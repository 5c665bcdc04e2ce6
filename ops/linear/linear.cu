// The linear family's CUDA dispatch (see linear_cuda.h): picks a quant-family kernel per
// call and quantises its activations. No kernels of its own.
#include "ops/core/error.h"
#include "ops/linear/linear_cuda.h"
#include "ops/quant/quant_cuda.h"

namespace fp::cuda {
namespace {

// The activation format a call uses: the type's fast format when the rows split into
// whole 256-element groups, else f32 through the generic kernel.
ActFormat act_format(DType t, int64_t cols, bool exact) {
  if (exact || t == DType::F32 || t == DType::F16) return ActFormat::f32;
  if (!matvec_supported(t, false)) return ActFormat::f32;
  const ActFormat f = matvec_act_format(t);
  if (f != ActFormat::f32 && cols % 256 != 0) return ActFormat::f32;
  return f;
}

void check_weight(const ref::Weight& w, const char* what) {
  if (w.empty()) fail(what, ": weight ", w.name, " is not bound");
  if (!matvec_supported(w.type, true) && !matvec_supported(w.type, false))
    fail(w.name, ": dtype ", dtype_name(w.type), " has no CUDA matvec");
}

// A pair shares one launch only over one type and shape (the kernel indexes both
// tensors with one geometry).
void check_pair(const ref::Weight& w, const ref::Weight& w2, float* y2, const char* what) {
  check_weight(w, what);
  check_weight(w2, what);
  if (w2.type != w.type || w2.rows != w.rows || w2.cols != w.cols || w2.experts != w.experts)
    fail(w2.name, ": ", dtype_name(w2.type), " [", w2.experts, "][", w2.rows, "][", w2.cols, "], expected ", w.name,
         "'s ", dtype_name(w.type), " [", w.experts, "][", w.rows, "][", w.cols, "] to share its launch (", what, ")");
  if (!y2) fail(w2.name, ": paired product without its outputs (", what, ")");
}

// Whether a dense call of n tokens goes to the GEMM: the plan's path, or the automatic
// choice; refuses a GEMM path that cannot run.
bool dense_gemm(const ref::Weight& w, int64_t n, const LinearWorkspace& ws, LinearPath path) {
  const bool gemm_fits = ws.gemm && linear_gemm_bytes(w.cols, n, ws.gemm_tile_rows) <= ws.gemm_ws_bytes;
  if (path == LinearPath::gemm) {
    if (w.type == DType::F32 || !dequant_supported(w.type))
      fail(w.name, ": cuda.gemm.dequant_cublas_f16 does not read ", dtype_name(w.type), " weights");
    if (!gemm_fits) fail(w.name, ": cuda.gemm.dequant_cublas_f16 without a GEMM workspace for ", n, " tokens");
  }
  const bool automatic_gemm = path == LinearPath::automatic && gemm_fits && n >= ws.gemm_min_tokens &&
                              w.type != DType::F32 && !ws.exact && dequant_supported(w.type);
  return path == LinearPath::gemm || automatic_gemm;
}

// cuBLAS cannot be launched with programmatic dependent launch: a plan marking a GEMM call
// overlap_prev is wrong (verify_plan refuses such plans; this guards plan-less callers).
void refuse_gemm_overlap(const ref::Weight& w, int64_t n, bool overlap_prev) {
  if (overlap_prev)
    fail(w.name, ": overlap_prev (programmatic dependent launch) on cuda.gemm.dequant_cublas_f16 for ", n,
         " tokens; expected it only on matvec calls");
}

// One matvec launch over `slots` slots with x already laid out slot by slot; w2 (same
// type and shape, or null) is read in the same launch with the same ids and activations
// into y2. overlap_prev: the activation quantiser (when there is one) and the matvec are
// both launched with programmatic dependent launch, each waiting for the kernel before it.
void run(const ref::Weight& w, const int32_t* ids, int32_t n_experts, int64_t slots, const float* x,
         int64_t x_stride, float* y, const LinearWorkspace& ws, Stream s, bool xf32 = false,
         bool overlap_prev = false, const ref::Weight* w2 = nullptr, float* y2 = nullptr) {
  const ActFormat f = act_format(w.type, w.cols, ws.exact || xf32);
  MatvecArgs a;
  a.type = w.type;
  a.w = w.data;
  a.rows = w.rows;
  a.cols = w.cols;
  a.y = y;
  a.ids = ids;
  a.n_experts = n_experts;
  a.n_slots = int32_t(slots);
  a.xf32 = f == ActFormat::f32 && w.type != DType::F32 && w.type != DType::F16;
  a.overlap_prev = overlap_prev;
  if (w2) {
    a.w2 = w2->data;
    a.y2 = y2;
  }
  if (f == ActFormat::f32) {
    a.x = x;
    a.x_stride = x_stride;
  } else {
    // Quantise every slot's row (x_stride 0: the one shared row).
    const int64_t rows_q = x_stride ? slots : 1;
    if (x_stride != 0 && x_stride != w.cols) fail(w.name, ": quantised activations need x_stride = cols");
    const int64_t need = act_bytes(f, rows_q * w.cols);
    if (need > ws.qact_bytes) fail(w.name, ": activation workspace of ", ws.qact_bytes, " bytes, needs ", need);
    quantize_activations(f, x, rows_q * w.cols, ws.qact, Launch{s, overlap_prev});
    a.x = ws.qact;
    a.x_stride = x_stride;
  }
  matvec(a, s);
}

}  // namespace

int64_t linear_qact_bytes(DType t, int64_t cols, int64_t slots) {
  const ActFormat f = act_format(t, cols, false);
  return f == ActFormat::f32 ? 0 : act_bytes(f, slots * cols);
}

void linear(const ref::Weight& w, const float* x, int64_t n, float* y, const LinearWorkspace& ws, Stream s,
            LinearPath path, bool overlap_prev) {
  check_weight(w, "cuda linear");
  if (n <= 0) fail(w.name, ": ", n, " tokens");
  if (dense_gemm(w, n, ws, path)) {
    refuse_gemm_overlap(w, n, overlap_prev);
    ws.gemm->run(w.type, w.data, w.rows, w.cols, x, n, y, ws.gemm_ws, ws.gemm_ws_bytes, ws.gemm_tile_rows);
    return;
  }
  run(w, nullptr, 0, n, x, w.cols, y, ws, s, path == LinearPath::matvec_xf32, overlap_prev);
}

void linear_pair(const ref::Weight& w, const ref::Weight& w2, const float* x, int64_t n, float* y, float* y2,
                 const LinearWorkspace& ws, Stream s, LinearPath path, bool overlap_prev) {
  check_pair(w, w2, y2, "cuda linear_pair");
  if (w.experts != 1) fail(w.name, ": ", w.experts, " experts in a dense paired product, expected one matrix");
  if (n <= 0) fail(w.name, ": ", n, " tokens");
  if (dense_gemm(w, n, ws, path)) {  // one type and shape: the same decision for w2
    refuse_gemm_overlap(w, n, overlap_prev);
    ws.gemm->run(w.type, w.data, w.rows, w.cols, x, n, y, ws.gemm_ws, ws.gemm_ws_bytes, ws.gemm_tile_rows);
    ws.gemm->run(w2.type, w2.data, w2.rows, w2.cols, x, n, y2, ws.gemm_ws, ws.gemm_ws_bytes, ws.gemm_tile_rows);
    return;
  }
  run(w, nullptr, 0, n, x, w.cols, y, ws, s, path == LinearPath::matvec_xf32, overlap_prev, &w2, y2);
}

void grouped_linear(const ref::Weight& w, int64_t groups, const float* x, int64_t n, float* y,
                    const LinearWorkspace& ws, Stream s, LinearPath path, bool overlap_prev) {
  check_weight(w, "cuda grouped_linear");
  if (groups <= 0 || w.rows % groups != 0) fail(w.name, ": ", w.rows, " rows do not split into ", groups, " groups");
  if (n <= 0) fail(w.name, ": ", n, " tokens");
  if (ref::Weight one = w; one.rows = w.rows / groups, dense_gemm(one, n, ws, path)) {
    // One GEMM per group (the dense rule decides, on one group's shape): group g's rows of
    // W against its columns of x (rows groups*cols apart), into its rows of y (rows
    // w.rows apart).
    const ref::Weight& g = one;
    refuse_gemm_overlap(w, n, overlap_prev);
    const int64_t group_bytes = int64_t(row_bytes(w.type, w.cols)) * g.rows;
    for (int64_t i = 0; i < groups; ++i)
      ws.gemm->run(w.type, static_cast<const uint8_t*>(w.data) + i * group_bytes, g.rows, w.cols, x + i * w.cols, n,
                   y + i * g.rows, ws.gemm_ws, ws.gemm_ws_bytes, ws.gemm_tile_rows, groups * w.cols, w.rows);
    return;
  }
  if (ws.iota_groups != groups || ws.iota_n < n * groups)
    fail(w.name, ": group table for ", ws.iota_groups, " groups x ", ws.iota_n, " slots, needs ", groups, " x ", n * groups);
  ref::Weight g = w;
  g.rows = w.rows / groups;
  g.experts = groups;
  run(g, ws.iota, int32_t(groups), n * groups, x, w.cols, y, ws, s, path == LinearPath::matvec_xf32, overlap_prev);
}

void expert_linear(const ref::Weight& w, const int32_t* ids, int64_t slots, const float* x, int64_t x_stride,
                   float* y, const LinearWorkspace& ws, Launch l) {
  check_weight(w, "cuda expert_linear");
  if (!ids) fail(w.name, ": expert-indexed product without ids");
  run(w, ids, int32_t(w.experts), slots, x, x_stride, y, ws, l.stream, false, l.overlap_prev);
}

void expert_linear_pair(const ref::Weight& w, const ref::Weight& w2, const int32_t* ids, int64_t slots,
                        const float* x, int64_t x_stride, float* y, float* y2, const LinearWorkspace& ws, Launch l) {
  check_pair(w, w2, y2, "cuda expert_linear_pair");
  if (!ids) fail(w.name, ": expert-indexed product without ids");
  run(w, ids, int32_t(w.experts), slots, x, x_stride, y, ws, l.stream, false, l.overlap_prev, &w2, y2);
}

}  // namespace fp::cuda
