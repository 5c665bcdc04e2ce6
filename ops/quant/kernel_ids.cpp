// CUDA-free metadata of the quant family's CUDA kernels (declared in quant_cuda.h): their
// stable ids and the activation format each matvec reads. Built into fp_ops so that the
// planner can name kernels on a machine without CUDA.
#include <cctype>

#include "ops/core/error.h"
#include "ops/quant/dequant.h"
#include "ops/quant/quant_cuda.h"

namespace fp::cuda {
namespace {

std::string lower(const char* s) {
  std::string r(s);
  for (char& c : r) c = char(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

bool fast_path(DType t) {
  switch (t) {
    case DType::Q8_0: case DType::Q2_K: case DType::Q4_K: case DType::IQ2_XXS:
    case DType::F16: case DType::F32: return true;
    default: return false;
  }
}

}  // namespace

std::string matvec_kernel_id(DType t, bool moe, bool xf32) {
  std::string id = moe ? "cuda.moe_matvec." : "cuda.matvec.";
  id += lower(dtype_name(t));
  if (xf32 && matvec_act_format(t) != ActFormat::f32) id += ".xf32";
  return id;
}

const char* act_format_name(ActFormat f) {
  switch (f) {
    case ActFormat::f32: return "f32";
    case ActFormat::q8_0: return "q8_0";
    case ActFormat::q8_k: return "q8_k";
  }
  return "?";
}

ActFormat matvec_act_format(DType t) {
  switch (t) {
    case DType::Q8_0: return ActFormat::q8_0;
    case DType::Q2_K: case DType::Q4_K: case DType::IQ2_XXS: return ActFormat::q8_k;
    default: return ActFormat::f32;
  }
}

bool matvec_supported(DType t, bool xf32) {
  if (t == DType::Q8_K) return false;  // an activation format, never a weight
  if (!xf32) return fast_path(t) || can_dequantize(t);
  return can_dequantize(t);
}

ActFormat matvec_args_act_format(const MatvecArgs& a) {
  return a.xf32 ? ActFormat::f32 : matvec_act_format(a.type);
}

int64_t act_bytes(ActFormat f, int64_t n) {
  switch (f) {
    case ActFormat::f32: return 4 * n;
    case ActFormat::q8_0: return (n + 255) / 256 * 272;
    case ActFormat::q8_k: return (n + 255) / 256 * 292;
  }
  fail("internal: unknown activation format");
}

}  // namespace fp::cuda
