// Registry entries of the sampling family: greedy argmax and temperature / top-k /
// top-p / min-p sampling over the logits (the function: sample.h), on the device so a
// decode step copies back a token, not the logits. (The summaries are recorded in the
// golden plans: changing their text changes those files.)
#include "ops/registry/entries.h"

namespace fp {

void register_sample_kernels(std::vector<KernelInfo>& out) {
  out.push_back(entries::cpu_reference(OpKind::argmax, "reference argmax (lowest index wins ties)", false));
  out.push_back(entries::cpu_reference(OpKind::sample, "reference sampler (temperature, top-p, min-p)", false));
  // Their kernels wait for the previous one first (PDL); the sampler's CUB sort and scan
  // launch plain, and the kernel after each waits for it anyway.
  out.push_back(entries::overlaps_prev(
      entries::cuda_simple("cuda.argmax", OpKind::argmax, "block-reduced argmax per token", false)));
  out.push_back(entries::overlaps_prev(entries::cuda_simple(
      "cuda.sample", OpKind::sample, "temperature / top-p / min-p sampling with a device RNG", false)));
}

}  // namespace fp
