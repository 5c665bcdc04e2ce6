// Registry entries of the hyper-connection family: embedding into HC streams, HC pre
// (flat RMS, mix, Sinkhorn, collapse), HC post, the output HC head and the MTP input
// projection. CUDA-free metadata only. One fused kernel each on CUDA.
#include "ops/registry/entries.h"

namespace fp {

void register_hc_kernels(std::vector<KernelInfo>& out) {
  out.push_back(entries::cpu_reference(OpKind::embed, "reference embedding row lookup into every HC stream"));
  out.push_back(entries::cpu_reference(OpKind::hc_pre, "reference HC pre"));
  out.push_back(entries::cpu_reference(OpKind::hc_post, "reference HC post", false));
  out.push_back(entries::cpu_reference(OpKind::output_hc_head, "reference output HC head"));
  out.push_back(entries::cpu_reference(OpKind::mtp_embed_proj, "reference MTP e/h projections"));
  // The kernels of hc.cu wait for the previous one first (PDL, ops/core/pdl.cuh); the MTP
  // projection has no CUDA launcher yet, so it never overlaps.
  out.push_back(entries::overlaps_prev(
      entries::cuda_simple("cuda.embed", OpKind::embed, "gather embedding rows, broadcast to HC streams")));
  out.push_back(entries::overlaps_prev(entries::cuda_simple(
      "cuda.hc_pre", OpKind::hc_pre, "fused flat RMS + mix matvec + Sinkhorn + collapse, one block per token")));
  out.push_back(entries::overlaps_prev(
      entries::cuda_simple("cuda.hc_post", OpKind::hc_post, "X' = post*a + comb^T X per element", false)));
  out.push_back(entries::overlaps_prev(
      entries::cuda_simple("cuda.output_hc_head", OpKind::output_hc_head, "fused HC head collapse")));
  out.push_back(entries::cuda_simple("cuda.mtp_embed_proj", OpKind::mtp_embed_proj,
                                     "enorm/hnorm + e_proj/h_proj matvecs, summed per stream", true, 0.8));
}

}  // namespace fp
