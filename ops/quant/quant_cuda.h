// Host entry points of the quant family's CUDA kernels (ops/quant/*.cu): dequantisation,
// activation quantisers, decode matvecs (dense and expert-indexed) and the prefill GEMM
// baseline. This header is CUDA-free (streams are opaque pointers) so that the planner
// and CPU-only code can name kernel ids and activation formats without a CUDA toolkit.
//
// Weights are read exactly as GGUF stores them: rows of blocks, blocks only 2-byte
// aligned (34/66/84/144-byte strides). No repack: every kernel here reads the file layout
// ("repack kind: none"). Tensor bases must be 16-byte aligned (GGUF data is 32-aligned,
// VMM mappings 2 MiB-aligned); kernels never read outside [base, base + bytes).
//
// Every launcher checks its arguments (fp::Error with what/expected) and the launch
// error; none allocates device memory, so all of them can be captured in a CUDA graph
// once quant_cuda_init() has run on the device.
#pragma once
#include <cstdint>
#include <string>

#include "ops/core/launch.h"
#include "ops/quant/types.h"

namespace fp::cuda {

// ---- Kernel ids (stable: an id never changes meaning) --------------------------------
// cuda.matvec.<type>        y = W x, the activation format of matvec_act_format(type)
// cuda.matvec.<type>.xf32   y = W x with f32 activations, any dequantisable type (generic,
//                           untuned: decodes each 32-element run and uses f32 FMAs)
// cuda.moe_matvec.<type>[.xf32]   the same over W[E][rows][cols] for a device list of ids
// cuda.gemm.dequant_cublas_f16    dequantise to f16 + cublasGemmEx (f32 accumulate)
// <type> is the lower-case ggml name: q8_0, iq2_xxs, q2_k, q4_k, f16, f32, ...
std::string matvec_kernel_id(DType t, bool moe, bool xf32);
inline constexpr const char* kGemmDequantCublasF16 = "cuda.gemm.dequant_cublas_f16";

// ---- Activation formats of the matvecs -------------------------------------------------
// f32:  plain floats.
// q8_0: ggml's Q8_0 quantiser (GGUF.md §14), bit for bit fp::quantize_row(Q8_0) per 32
//       elements, stored in groups of 256 elements: [int8 q x 256][f16 d x 8] (272 bytes),
//       so that the int8 runs are 16-byte aligned.
// q8_k: ggml's Q8_K blocks exactly as fp::quantize_row(Q8_K) writes them (292 bytes per
//       256: f32 d | int8 q[256] | int16 bsums[16]).
// A non-finite input makes its block's scale NaN, so NaN reaches y instead of vanishing.
enum class ActFormat { f32, q8_0, q8_k };
const char* act_format_name(ActFormat f);

// The format cuda.matvec.<t> reads (the choice per type, as ggml's CPU backend pairs them,
// so fp::matmul_q8 is the exact reference): Q8_0 -> q8_0; Q2_K, Q4_K, IQ2_XXS -> q8_k;
// F16, F32 -> f32; every other dequantisable type -> f32 through the generic decoder.
ActFormat matvec_act_format(DType t);
bool matvec_supported(DType t, bool xf32);

int64_t act_bytes(ActFormat f, int64_t n);  // device bytes for n activations
// x: n floats (n a multiple of 32 for q8_0, of 256 for q8_k) -> dst (act_bytes(f, n)).
// l: stream and PDL (ops/core/launch.h; the f32 "format" is a plain copy).
void quantize_activations(ActFormat f, const float* x, int64_t n, void* dst, Launch l);

// ---- Dequantisation ----------------------------------------------------------------
// n elements of type t (a multiple of its block) at src -> dst as f32, or as f16 (each
// f32 value rounded to nearest even). Same bits as fp::dequantize_row (GGUF.md §13).
bool dequant_supported(DType t);
void dequantize(DType t, const void* src, int64_t n, float* dst, Stream s);
void dequantize_f16(DType t, const void* src, int64_t n, void* dst, Stream s);

// ---- Decode matvec -----------------------------------------------------------------
// Dense: y[r] = sum_c W[r][c] x[c], W rows x cols in GGUF row layout.
// Expert-indexed (ids != nullptr): W is [n_experts][rows][cols]; for slot s < n_slots,
// y[s*rows + r] = W[ids[s]] row r . x_s, where x_s = x + s*x_stride activations (x_stride
// 0: every slot reads the same x). ids live in device memory; an id outside [0,
// n_experts) reads nothing and makes its slot's outputs NaN.
struct MatvecArgs {
  DType type = DType::F32;
  const void* w = nullptr;
  int64_t rows = 0, cols = 0;
  const void* x = nullptr;  // in the kernel's activation format
  int64_t x_stride = 0;     // activations (elements) between slots; multiple of 256 if quantised
  float* y = nullptr;
  const int32_t* ids = nullptr;
  int32_t n_experts = 0;
  int32_t n_slots = 1;
  bool xf32 = false;        // run cuda.matvec.<type>.xf32 instead of the default kernel
  // Optional second tensor of the same type and shape read with the same ids and
  // activations in the same launch (an expert's gate and up): y2 = W2 x, laid out as y.
  const void* w2 = nullptr;
  float* y2 = nullptr;
  // Programmatic dependent launch: the kernel may start while the previous kernel in the
  // stream is still running. It reads only weights before that kernel has finished (dense
  // calls: the first chunk of each warp; expert-indexed calls wait for the ids), and x,
  // ids and y only after. Off by default: the plan decides.
  bool overlap_prev = false;
};
void matvec(const MatvecArgs& a, Stream s);
ActFormat matvec_args_act_format(const MatvecArgs& a);  // what a.x must hold

// ---- Prefill GEMM baseline (cuda.gemm.dequant_cublas_f16) ----------------------------
// Y[t][r] = sum_c W[r][c] X[t][c] for t < n_tok: W is dequantised to f16 in row tiles,
// X rounded to f16, cublasGemmEx accumulates in f32. The caller owns the workspace
// (sized by workspace_bytes), so run() allocates nothing.
class CublasGemm {
 public:
  explicit CublasGemm(Stream s);
  ~CublasGemm();
  CublasGemm(const CublasGemm&) = delete;
  CublasGemm& operator=(const CublasGemm&) = delete;

  static int64_t workspace_bytes(int64_t cols, int64_t n_tok, int64_t tile_rows);
  // x rows are ldx floats apart and y rows ldy floats apart (0: cols / rows, dense): a
  // grouped product runs one call per group on its columns of x and its rows of y.
  void run(DType t, const void* w, int64_t rows, int64_t cols, const float* x, int64_t n_tok, float* y,
           void* workspace, int64_t workspace_bytes, int64_t tile_rows, int64_t ldx = 0, int64_t ldy = 0);

 private:
  struct Impl;
  Impl* impl_;
};

// ---- Random valid weights (--weights random:SEED) ------------------------------------
// Fills n elements of type t at dst (device or device-mapped host memory) with valid
// random blocks: random quant bits, every f16/f32 scale field finite and sized so that
// dequantised values stay within about +-scale around center. Deterministic in seed.
// I32 tensors get integers in [0, int_range) (int_range 0: any non-negative int32).
struct RandomFill {
  uint64_t seed = 0;
  float scale = 0.05f;
  float center = 0.0f;
  int64_t int_range = 0;
  // Element index of dst[0] within the whole tensor: a part of a tensor (a multi-GPU
  // plan's expert slice) gets exactly that part of the whole tensor's fill. A multiple of
  // the block size, at a 4-byte boundary of the tensor's bytes.
  int64_t first = 0;
};
bool fill_supported(DType t);
void fill_random(DType t, void* dst, int64_t n, const RandomFill& f, Stream s);

// Uploads the IQ constant tables to the current device (once per device). Launchers call
// it too, but outside a graph capture: call it before capturing.
void quant_cuda_init();

}  // namespace fp::cuda
