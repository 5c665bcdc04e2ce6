// Registry entries of the elementwise family: weighted RMSNorm and the residual add of
// the FFN (f = moe + shared). CUDA-free metadata only.
#include "ops/registry/entries.h"

namespace fp {

void register_norm_kernels(std::vector<KernelInfo>& out) {
  out.push_back(entries::cpu_reference(OpKind::rms_norm, "reference weighted RMSNorm", false));
  out.push_back(entries::cpu_reference(OpKind::add, "reference elementwise add", false));
  // Both kernels wait for the previous one first (PDL, ops/core/pdl.cuh).
  out.push_back(entries::overlaps_prev(
      entries::cuda_simple("cuda.rms_norm", OpKind::rms_norm, "one block per row, F32 accumulate", false)));
  out.push_back(entries::overlaps_prev(entries::cuda_simple("cuda.add", OpKind::add, "elementwise add", false)));
}

}  // namespace fp
