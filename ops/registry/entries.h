// Helpers for writing registry entries: the CPU reference kernel of an op (one per op
// kind, id "cpu.<op>") and the common shape of small memory-bound CUDA kernels. Each
// family's registry.cpp uses them for its simple ops and spells out the rest.
#pragma once
#include <string>

#include "ops/core/error.h"
#include "ops/registry/cost.h"
#include "ops/registry/kernel_registry.h"

namespace fp::entries {

// The CPU reference implementation of `op` (what the CPU executor runs): any token
// count; weights of every dtype fp can dequantise (`dequant_weights`), or of any dtype
// when the op only reads small float / index tables (norm weights, tid2eid).
inline KernelInfo cpu_reference(OpKind op, std::string summary, bool dequant_weights = true) {
  const double flop_eff = 0.25;
  KernelInfo k;
  k.id = std::string("cpu.") + op_kind_name(op);
  k.op = op;
  k.backend = Backend::Cpu;
  k.any_dequant = dequant_weights;
  k.summary = std::move(summary);
  k.cost = [flop_eff](const KernelShape& s, const DeviceRates& r) {
    cost::Pass p;
    p.dev_bytes = s.weight_bytes + s.host_weight_bytes + s.act_bytes;
    p.flops = s.flops;
    p.rate = r.fp32;
    p.bw_eff = 0.6;
    p.flop_eff = flop_eff;
    return KernelCost{cost::us(p, r), 0, {}};
  };
  return k;
}

// A fused memory-bound CUDA kernel: one pass over weights and activations, one thread
// block per 4 KiB of traffic (at least one per token), 256 threads. `dequant_weights`
// as for cpu_reference.
inline KernelInfo cuda_simple(std::string id, OpKind op, std::string summary, bool dequant_weights = true,
                              double bw_eff = 0.6) {
  KernelInfo k;
  k.id = std::move(id);
  k.op = op;
  k.backend = Backend::Cuda;
  k.min_cc = 70;
  k.any_dequant = dequant_weights;
  k.summary = std::move(summary);
  k.cost = [bw_eff](const KernelShape& s, const DeviceRates& r) {
    const double traffic = s.weight_bytes + s.host_weight_bytes + s.act_bytes;
    const double blocks = std::max<double>(s.tokens, traffic / 4096.0);
    cost::Pass p;
    p.dev_bytes = s.weight_bytes + s.act_bytes;
    p.host_bytes = s.host_weight_bytes;
    p.flops = s.flops;
    p.rate = r.fp32;
    p.bw_eff = bw_eff;
    p.flop_eff = 0.4;
    p.parallel = cost::parallel_fraction(blocks, r);
    KernelCost c{cost::us(p, r), 0, {}};
    c.launch.grid[0] = static_cast<uint32_t>(std::min<double>(blocks, 1u << 30));
    c.launch.grid[1] = c.launch.grid[2] = 1;
    c.launch.block[0] = 256;
    c.launch.block[1] = c.launch.block[2] = 1;
    return c;
  };
  return k;
}

// `k` with programmatic dependent launch: its CUDA launcher takes the node's Launch
// (ops/core/launch.h) and each of its kernels waits for the previous one first
// (ops/core/pdl.cuh), so a plan may mark its nodes overlap_prev (KernelInfo::overlap_min_cc).
inline KernelInfo overlaps_prev(KernelInfo k) {
  k.overlap_min_cc = kOverlapMinCc;
  return k;
}

}  // namespace fp::entries
