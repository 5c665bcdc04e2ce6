// Registry entries of the MoE family: router (scores, hash or biased top-k, weights),
// moe (routed experts: gate/up SwiGLU with clamps, down, weighted sum) and the shared
// expert's swiglu. CUDA-free metadata only.
//
// MoE shapes: m = expert FFN width, k = model width, groups = experts used per token,
// experts = experts in the layer; wtypes = {gate, up, down}. weight_bytes counts only
// the experts a step is expected to touch (the op graph computes that expectation).
// - cuda.moe.matvec: per (token, slot) warp-per-row matvecs, every slot of every token
//   one slot of one launch (ops/moe/moe.cu); each slot re-reads its expert's matrices,
//   so it suits decode.
// - cuda.moe.grouped_dequant_mma (moe_grouped.cu): slots grouped by expert on the
//   device; per tile of <= 64 slots of one expert the weight block is dequantised to f16
//   in shared memory and multiplied on f16 tensor cores (f32 accumulate); capturable.
//   Each touched expert's weights are read and decoded once per slot tile.
// Registered ahead of their kernels (implemented = false, never planned):
// - cuda.moe.grouped_int8_tc: tokens sorted by expert on the device, quantised blocks
//   unpacked to int8 in shared memory, int8 tensor cores; capturable (grid sized for
//   the worst case, expert offsets read on the device).
// - cuda.moe.grouped_dequant_cublas: per touched expert, dequantise to F16 and cuBLAS;
//   needs per-expert token counts on the host, so it cannot live inside a graph.
#include <algorithm>
#include <cmath>

#include "ops/moe/moe_cuda.h"
#include "ops/registry/entries.h"

namespace fp {

namespace {

const std::vector<DType> kExpertTypes = {DType::IQ2_XXS, DType::Q2_K, DType::Q4_K, DType::Q8_0};

std::string whole_blocks(const KernelShape& s) {
  // gate/up rows have k inputs, down rows have m inputs.
  for (size_t i = 0; i < s.wtypes.size(); ++i) {
    const int64_t in = i == 2 ? s.m : s.k;
    if (in % traits(s.wtypes[i]).block != 0)
      return str("row length ", in, " is not a multiple of the ", dtype_name(s.wtypes[i]), " block");
  }
  return "";
}

// Distinct experts a step touches in expectation (uniform routing): e * (1 - (1 - u/e)^t).
double touched_experts(const KernelShape& s) {
  if (s.experts <= 0) return static_cast<double>(s.groups);
  const double e = static_cast<double>(s.experts);
  return e * (1.0 - std::pow(1.0 - static_cast<double>(s.groups) / e, s.tokens));
}

KernelInfo moe_matvec() {
  KernelInfo k;
  k.id = "cuda.moe.matvec";
  k.op = OpKind::moe;
  k.backend = Backend::Cuda;
  k.min_cc = 70;
  k.any_dequant = true;  // cuda.moe_matvec.<type> exists for every dequantisable type
  k.summary = "per (token, slot) warp-per-row matvecs (cuda.moe_matvec.<type> per tensor): gate/up, clamped SwiGLU, "
              "down; each slot re-reads its expert";
  k.check = whole_blocks;
  k.cost = [](const KernelShape& s, const DeviceRates& r) {
    // weight_bytes covers the touched experts once; every slot reads its expert again.
    const double slots = static_cast<double>(s.tokens) * s.groups;
    const double reads = s.tokens <= 1 ? 1.0 : std::max(1.0, slots / std::max(1.0, touched_experts(s)));
    cost::Pass p;
    p.dev_bytes = s.weight_bytes * reads + s.act_bytes;
    p.host_bytes = s.host_weight_bytes * reads;
    p.flops = s.flops;
    p.rate = r.fp32 * 2.0;
    p.bw_eff = 0.7;
    p.flop_eff = 0.5;
    if (const double dr = cost::decode_rate(s.wtypes, r); dr > 0) {
      p.flops = s.flops / 2;  // weights decoded (one multiply-add each)
      p.rate = dr;
      p.flop_eff = 1.0;
    }
    p.parallel = cost::parallel_fraction(static_cast<double>(s.tokens) * s.groups * s.m / 4.0, r);
    KernelCost c{cost::us(p, r) + r.launch_us, 0, {}};  // two launches
    c.launch = {{cost::ceil_div(s.m, 4), static_cast<uint32_t>(s.groups), s.tokens}, {32, 4, 1}, 0};
    return c;
  };
  return k;
}

KernelInfo moe_grouped_mma() {
  KernelInfo k;
  k.id = cuda::kMoeGroupedDequantMma;
  k.op = OpKind::moe;
  k.backend = Backend::Cuda;
  k.min_cc = 70;  // WMMA f16
  k.min_tokens = 2;  // correct for any n; the cost says where it beats the matvecs
  k.dtypes = {DType::IQ2_XXS, DType::Q2_K, DType::Q4_K, DType::Q8_0, DType::F16};
  k.summary = "slots grouped by expert on the device; weight tiles dequantised to f16 in shared memory, f16 tensor cores";
  k.check = [](const KernelShape& s) {
    if (s.k % 256 != 0 || s.m % 256 != 0) return str("widths ", s.k, " and ", s.m, ", expected multiples of 256");
    if (s.wtypes.size() == 3 && s.wtypes[0] != s.wtypes[1]) return std::string("gate and up dtypes differ");
    return whole_blocks(s);
  };
  k.cost = [](const KernelShape& s, const DeviceRates& r) {
    const double touched = std::max(1.0, touched_experts(s));
    const double slots = static_cast<double>(s.tokens) * s.groups;
    const double tiles = std::ceil(slots / touched / double(cuda::kMoeGroupedTileSlots));  // per touched expert
    // Weights: read and decoded once per tile. Activations: u in, u as f16, mid (f16) and
    // the per-slot outputs (f32) written and read back, the output.
    cost::Pass decode;
    decode.dev_bytes = s.weight_bytes * tiles;
    decode.host_bytes = s.host_weight_bytes * tiles;
    decode.flops = touched * tiles * 3.0 * s.m * s.k * 8.0 * 2.0;  // ~8 lane instructions a weight
    decode.rate = r.fp32;
    decode.flop_eff = 0.5;
    decode.parallel = cost::parallel_fraction(touched * tiles * (s.m / 64.0 + s.k / 128.0), r);
    cost::Pass mma;
    mma.dev_bytes = s.act_bytes + slots * (s.m * 2.0 * 2.0 + s.k * 4.0 * 2.0) + s.tokens * s.k * 2.0;
    mma.flops = s.flops;
    mma.rate = r.fp16;
    mma.flop_eff = 0.2;  // WMMA, single-buffered, tiles padded to 64 slots (NOTES.md)
    mma.parallel = decode.parallel;
    // Single-buffered: decoding and MMAs of a block do not overlap, so the two add.
    // Five launches (group, to_f16, gate/up, down, combine): four beyond the first.
    const double us = cost::us(decode, r) + cost::us(mma, r) + 4 * r.launch_us;
    const cuda::MoeGroupedLayout l = cuda::moe_grouped_layout(s.tokens, s.groups, s.k, s.m, std::max<int64_t>(s.experts, 1));
    KernelCost c{us, static_cast<uint64_t>(l.bytes), {}};
    c.launch = {{static_cast<uint32_t>(s.m / 64), static_cast<uint32_t>(l.max_tiles), 1}, {256, 1, 1}, 52224};
    return c;
  };
  return k;
}

KernelInfo moe_grouped_int8() {
  KernelInfo k;
  k.id = "cuda.moe.grouped_int8_tc";
  k.op = OpKind::moe;
  k.backend = Backend::Cuda;
  k.min_cc = 80;
  k.min_tokens = 2;
  k.dtypes = kExpertTypes;
  k.summary = "tokens grouped by expert on the device; blocks unpacked to int8, int8 tensor cores";
  k.implemented = false;
  k.check = whole_blocks;
  k.cost = [](const KernelShape& s, const DeviceRates& r) {
    const double touched = std::max(1.0, touched_experts(s));
    const double per_expert_tokens = static_cast<double>(s.tokens) * s.groups / touched;
    const double rereads = std::ceil(per_expert_tokens / 64.0);  // 64-token tiles per expert
    const double q8 = static_cast<double>(s.tokens) * (s.k + s.m * s.groups) * (34.0 / 32.0);
    cost::Pass sort;  // route tokens to experts, quantise activations
    sort.dev_bytes = static_cast<double>(s.tokens) * s.k * 4.0 + q8;
    sort.parallel = cost::parallel_fraction(sort.dev_bytes / 4096, r);
    cost::Pass gemm;
    gemm.dev_bytes = s.weight_bytes * rereads + s.act_bytes + q8;
    gemm.host_bytes = s.host_weight_bytes * rereads;
    gemm.flops = s.flops;
    gemm.rate = r.int8;
    gemm.flop_eff = 0.3;  // unpacking K-quant / IQ blocks costs ALU time
    gemm.parallel = cost::gemm_parallel(touched * std::ceil(s.m / 128.0) * rereads, s.k, r);
    const double us = cost::us(sort, r) + cost::us(gemm, r) + r.launch_us;  // gate/up, then down
    return KernelCost{us, static_cast<uint64_t>(q8 + s.tokens * s.groups * 8.0), {}};
  };
  return k;
}

KernelInfo moe_grouped_cublas() {
  KernelInfo k;
  k.id = "cuda.moe.grouped_dequant_cublas";
  k.op = OpKind::moe;
  k.backend = Backend::Cuda;
  k.min_cc = 70;
  k.min_tokens = 2;
  k.any_dequant = true;
  k.capturable = false;
  k.summary = "per touched expert: dequantise to F16, cuBLAS gate/up/down (host reads expert counts)";
  k.implemented = false;
  k.check = whole_blocks;
  k.cost = [](const KernelShape& s, const DeviceRates& r) {
    const double touched = std::max(1.0, touched_experts(s));
    const double f16_expert = 3.0 * s.m * s.k * 2.0;
    cost::Pass dequant;
    dequant.dev_bytes = s.weight_bytes + touched * f16_expert;
    dequant.host_bytes = s.host_weight_bytes;
    dequant.bw_eff = 0.75;
    dequant.parallel = cost::parallel_fraction(touched * s.m / 8.0, r);
    cost::Pass gemm;
    gemm.dev_bytes = touched * f16_expert + s.act_bytes;
    gemm.flops = s.flops;
    gemm.rate = r.fp16;
    gemm.flop_eff = 0.5;
    gemm.parallel = cost::gemm_parallel(touched * std::ceil(s.m / 128.0), s.k, r);
    // 3 dequant + 3 GEMM launches per touched expert, plus the host round trip (~20 us).
    const double us = cost::us(dequant, r) + cost::us(gemm, r) + touched * 6 * r.launch_us + 20.0;
    return KernelCost{us, static_cast<uint64_t>(f16_expert + s.tokens * (s.k + 2.0 * s.m) * 2.0 * s.groups), {}};
  };
  return k;
}

}  // namespace

void register_moe_kernels(std::vector<KernelInfo>& out) {
  out.push_back(entries::cpu_reference(OpKind::router, "reference router: sqrt-softplus, hash or biased top-k", false));
  out.push_back(entries::cpu_reference(OpKind::moe, "reference routed experts, one expert at a time"));
  out.push_back(entries::cpu_reference(OpKind::swiglu, "reference clamped SwiGLU", false));
  // The implemented CUDA kernels wait for the previous one first (PDL, ops/core/pdl.cuh);
  // inside cuda.moe.matvec the expert matvecs read the router's ids only after that wait.
  out.push_back(entries::overlaps_prev(entries::cuda_simple(
      "cuda.router", OpKind::router, "one block per token: scores, hash lookup or biased top-k, weights", false)));
  out.push_back(
      entries::overlaps_prev(entries::cuda_simple("cuda.swiglu", OpKind::swiglu, "elementwise clamped SwiGLU", false)));
  out.push_back(entries::overlaps_prev(entries::cuda_simple("cuda.moe.combine", OpKind::moe_combine,
                                                            "multi-GPU: weighted sum of the all-reduced per-slot expert "
                                                            "outputs in slot order (the combine of cuda.moe.matvec)",
                                                            false)));
  out.push_back(entries::overlaps_prev(moe_matvec()));
  out.push_back(entries::overlaps_prev(moe_grouped_mma()));
  out.push_back(moe_grouped_int8());
  out.push_back(moe_grouped_cublas());
}

}  // namespace fp
