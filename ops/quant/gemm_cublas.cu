// cuda.gemm.dequant_cublas_f16: the prefill GEMM baseline every custom GEMM is measured
// against. W is dequantised to f16 in row tiles (exact values rounded to nearest even),
// X is rounded to f16 once, and cublasGemmEx multiplies with f32 accumulation into f32 Y.
// Y is token-major (Y[t*rows + r]), as fp::matmul writes it.
#include <cublas_v2.h>

#include "ops/quant/cuda_common.cuh"
#include "ops/quant/quant_cuda.h"

namespace fp::cuda {
namespace {

void check_cublas(cublasStatus_t st, const char* what) {
  if (st != CUBLAS_STATUS_SUCCESS) fail("cuBLAS error in ", what, ": status ", int(st));
}

// y[t][c] = x[t*ldx + c] rounded to f16, for t < n_tok, c < cols (y dense).
__global__ void f32_to_f16(const float* __restrict__ x, int64_t n_tok, int64_t cols, int64_t ldx,
                           __half* __restrict__ y) {
  const int64_t n = n_tok * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / cols;
    y[i] = __float2half_rn(x[t * ldx + (i - t * cols)]);
  }
}

constexpr int64_t kCublasWorkspace = 32ll << 20;  // fixed, so cuBLAS never allocates in a graph

int64_t round_up(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

}  // namespace

struct CublasGemm::Impl {
  cublasHandle_t handle = nullptr;
  void* workspace = nullptr;
  Stream stream = nullptr;
};

CublasGemm::CublasGemm(Stream s) : impl_(new Impl) {
  impl_->stream = s;
  try {
    check_cublas(cublasCreate(&impl_->handle), "cublasCreate");
    check_cublas(cublasSetStream(impl_->handle, s), "cublasSetStream");
    check(cudaMalloc(&impl_->workspace, kCublasWorkspace), "cuBLAS workspace");
    check_cublas(cublasSetWorkspace(impl_->handle, impl_->workspace, kCublasWorkspace), "cublasSetWorkspace");
  } catch (...) {
    if (impl_->handle) cublasDestroy(impl_->handle);
    if (impl_->workspace) cudaFree(impl_->workspace);
    delete impl_;
    throw;
  }
}

CublasGemm::~CublasGemm() {
  cublasDestroy(impl_->handle);
  cudaFree(impl_->workspace);
  delete impl_;
}

void CublasGemm::run(DType t, const void* w, int64_t rows, int64_t cols, const float* x, int64_t n_tok, float* y,
                     void* workspace, int64_t ws_bytes, int64_t tile_rows, int64_t ldx, int64_t ldy) {
  const char* what = "cuda gemm dequant_cublas_f16";
  if (rows <= 0 || cols <= 0 || n_tok <= 0 || tile_rows <= 0) fail(what, ": sizes must be positive");
  if (ldx == 0) ldx = cols;
  if (ldy == 0) ldy = rows;
  if (ldx < cols || ldy < rows || ldy > INT32_MAX)
    fail(what, ": row strides x ", ldx, " / y ", ldy, ", expected at least the ", cols, " columns / ", rows, " rows");
  if (cols % traits(t).block != 0) fail(what, ": ", cols, " columns of ", dtype_name(t), ", expected a multiple of ", traits(t).block);
  if (ws_bytes < workspace_bytes(cols, n_tok, tile_rows))
    fail(what, ": workspace of ", ws_bytes, " bytes, expected at least ", workspace_bytes(cols, n_tok, tile_rows));
  if (rows > INT32_MAX || cols > INT32_MAX || n_tok > INT32_MAX) fail(what, ": sizes beyond int32");
  const int64_t per_row = row_bytes(t, cols);
  if (tile_rows < rows && (per_row * tile_rows) % 16 != 0)
    fail(what, ": tile of ", tile_rows, " rows starts off 16-byte alignment (", per_row, " bytes per row)");
  auto* xh = static_cast<__half*>(workspace);
  auto* wh = reinterpret_cast<__half*>(static_cast<uint8_t*>(workspace) + round_up(2 * n_tok * cols, 256));
  const Stream s = impl_->stream;
  const int64_t nx = n_tok * cols;
  f32_to_f16<<<int((nx + 255) / 256 < 4096 ? (nx + 255) / 256 : 4096), 256, 0, s>>>(x, n_tok, cols, ldx, xh);
  check_launch(what);
  const float alpha = 1.0f, beta = 0.0f;
  for (int64_t r0 = 0; r0 < rows; r0 += tile_rows) {
    const int64_t rt = rows - r0 < tile_rows ? rows - r0 : tile_rows;
    dequantize_f16(t, static_cast<const uint8_t*>(w) + r0 * per_row, rt * cols, wh, s);
    // Column-major view: W tile is cols x rt (lda = cols), X is cols x n_tok, Y is rows x
    // n_tok with its columns ldy apart.
    check_cublas(cublasGemmEx(impl_->handle, CUBLAS_OP_T, CUBLAS_OP_N, int(rt), int(n_tok), int(cols), &alpha, wh,
                              CUDA_R_16F, int(cols), xh, CUDA_R_16F, int(cols), &beta, y + r0, CUDA_R_32F, int(ldy),
                              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 what);
  }
}

}  // namespace fp::cuda
