// Host entry of the linear family on CUDA (linear.cu): y = W·x for the executor's
// matmul, grouped_matmul and expert-indexed products, over weights in device memory
// (ref::Weight whose data points to the device). The kernels themselves are the quant
// family's (ops/quant/quant_cuda.h); this file only picks one per call and prepares its
// activations:
//   - cuda.matvec.<type> with the activation format it reads (q8_0 / q8_k quantised
//     here into the caller's workspace) when the row length allows it, else the
//     generic f32-activation kernel (.xf32); `exact` forces .xf32 (plain f32 math, the
//     CPU reference's arithmetic up to summation order);
//   - several tokens are several slots of one launch (each re-reads the weight);
//   - dense products of at least gemm_min_tokens tokens over non-F32 weights go to
//     cuda.gemm.dequant_cublas_f16 when the workspace has a CublasGemm.
// That is the automatic choice. A caller running a plan names the path instead
// (LinearPath: the registry ids cuda.matvec.<type>, cuda.matvec.<type>.xf32, their
// cuda.grouped_matvec.* forms, cuda.gemm.dequant_cublas_f16), and whether the matvec
// overlaps the previous kernel (`overlap_prev`: MatvecArgs::overlap_prev, programmatic
// dependent launch, compute capability 9.0+; the plan's Node.overlap_prev). The matvec then
// follows the activation quantiser, or the caller's previous kernel for f32 activations,
// and waits for it before it reads x: the same results either way. (The activation
// quantiser is then launched the same way and waits for the caller's previous kernel.)
// Nothing here allocates, so every call can be captured in a CUDA graph.
// CUDA-free header.
#pragma once
#include <cstdint>

#include "ops/core/launch.h"
#include "ops/linear/linear.h"

namespace fp::cuda {

class CublasGemm;

struct LinearWorkspace {
  void* qact = nullptr;           // quantised activations
  int64_t qact_bytes = 0;
  const int32_t* iota = nullptr;  // device [i % groups] table for grouped products
  int64_t iota_n = 0;             // entries (>= tokens * groups)
  int64_t iota_groups = 0;
  CublasGemm* gemm = nullptr;     // optional prefill GEMM
  void* gemm_ws = nullptr;
  int64_t gemm_ws_bytes = 0;
  int64_t gemm_tile_rows = 4096;
  int64_t gemm_min_tokens = 32;
  bool exact = false;             // f32 activations everywhere
};

// Which kernel a call runs: the automatic choice above, or the one a plan names.
enum class LinearPath : uint8_t {
  automatic,
  matvec,       // cuda.matvec.<type>: the type's activation format (f32 where rows do not split)
  matvec_xf32,  // cuda.matvec.<type>.xf32: f32 activations
  gemm,         // cuda.gemm.dequant_cublas_f16 (dense only; needs ws.gemm)
};

// Bytes of quantised activations a call over `slots` rows of `cols` values needs.
int64_t linear_qact_bytes(DType t, int64_t cols, int64_t slots);
// Bytes of GEMM workspace for n_tok tokens of `cols` inputs.
int64_t linear_gemm_bytes(int64_t cols, int64_t n_tok, int64_t tile_rows);

// y[t*w.rows + r] = W[r]·x[t*w.cols ..] for t < n. `overlap_prev` with a call that
// goes to the GEMM is refused (cuBLAS kernels do not wait for the previous one).
void linear(const ref::Weight& w, const float* x, int64_t n, float* y, const LinearWorkspace& ws, Stream s,
            LinearPath path = LinearPath::automatic, bool overlap_prev = false);

// Two weights of one type and shape on the same x (a plan's paired matmul node: the
// shared expert's gate and up, a compressor's kv and gate): y = W·x and y2 = W2·x. On a
// matvec path one activation quantisation and one launch serve both (MatvecArgs::w2);
// the GEMM path runs one GEMM per weight. Each output is bit for bit linear()'s with
// the same path; a pair of another type or shape is refused.
void linear_pair(const ref::Weight& w, const ref::Weight& w2, const float* x, int64_t n, float* y, float* y2,
                 const LinearWorkspace& ws, Stream s, LinearPath path = LinearPath::automatic,
                 bool overlap_prev = false);

// attn_output_a: W holds `groups` blocks of rows; group g of token t reads
// x[t][g*cols ..) and writes y[t][g*rg ..) (rg = rows / groups).
// `path`: as linear()'s; the GEMM path runs one cuBLAS GEMM per group.
void grouped_linear(const ref::Weight& w, int64_t groups, const float* x, int64_t n, float* y,
                    const LinearWorkspace& ws, Stream s, LinearPath path = LinearPath::automatic,
                    bool overlap_prev = false);

// Expert-indexed: slot q < slots reads x + q*x_stride (x_stride 0: all the same x) and
// matrix ids[q] of W[experts][rows][cols]; y[q*rows + r]. ids in device memory; an
// out-of-range id yields NaN outputs for its slot (never a read outside W). l: stream and
// PDL (ops/core/launch.h: MatvecArgs::overlap_prev, the expert matvec reads ids after its wait).
void expert_linear(const ref::Weight& w, const int32_t* ids, int64_t slots, const float* x, int64_t x_stride,
                   float* y, const LinearWorkspace& ws, Launch l);
// Two expert tensors of one type and shape (an expert's gate and up) on the same slots:
// one activation quantisation and one launch instead of two of each; each output the
// same as expert_linear's.
void expert_linear_pair(const ref::Weight& w, const ref::Weight& w2, const int32_t* ids, int64_t slots,
                        const float* x, int64_t x_stride, float* y, float* y2, const LinearWorkspace& ws, Launch l);

}  // namespace fp::cuda
