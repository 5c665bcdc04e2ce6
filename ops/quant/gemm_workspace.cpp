// The dequantise + cuBLAS GEMM's workspace size (gemm_cublas.cu carves it: the f16
// activations, then one f16 weight tile), defined CUDA-free so that the planner budgets
// the executor's workspace with the same function (planner/memory/cuda_buffers.h).
#include "ops/linear/linear_cuda.h"
#include "ops/quant/quant_cuda.h"

namespace fp::cuda {
namespace {

int64_t round_up_256(int64_t v) { return (v + 255) / 256 * 256; }

}  // namespace

int64_t CublasGemm::workspace_bytes(int64_t cols, int64_t n_tok, int64_t tile_rows) {
  return round_up_256(2 * n_tok * cols) + round_up_256(2 * tile_rows * cols);
}

int64_t linear_gemm_bytes(int64_t cols, int64_t n_tok, int64_t tile_rows) {
  return CublasGemm::workspace_bytes(cols, n_tok, tile_rows);
}

}  // namespace fp::cuda
