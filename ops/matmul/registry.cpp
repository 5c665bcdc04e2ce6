// Registry entries of the matmul family: y = W x (matmul) and the per-group form used by
// attn_output_a (grouped_matmul). CUDA-free metadata only; the kernels live beside this
// file (*.cu) and the CPU reference in ops/quant/dot.h.
//
// The variants and where each should win (the cost functions encode exactly this):
// - cuda.matvec.<dtype>: warp-per-row matvec; each token of the step is one slot of the
//   launch and re-reads the weight (ops/linear/linear.cu), so it is bandwidth-bound and
//   best at 1..8 tokens, but runs any token count (the grouped form is the only grouped
//   kernel this build has, prefill included).
//   On compute capability 9.0+ it may overlap the previous kernel (programmatic
//   dependent launch, KernelInfo::overlap_min_cc): a plan decision per node.
// - cuda.gemm.dequant_cublas_f16: dequantise weights to F16 in tiles, then cuBLAS on
//   tensor cores; pays extra weight traffic, wins when there are enough tokens. Dense and
//   grouped (one GEMM per group), not over F32 weights (those stay on cuda.matvec.f32).
// Registered ahead of their kernels (implemented = false: never planned, see
// KernelInfo::implemented): cuda.gemm.int8_tc (Q8_0 weights x Q8 activations on int8
// tensor cores), cuda.gemm.cublas (F16/BF16 weights straight into cuBLAS) and the
// grouped forms of both.
#include <algorithm>
#include <cctype>
#include <cmath>

#include "ops/registry/entries.h"

namespace fp {

namespace {

using cost::ceil_div;

struct MatvecVariant {
  const char* id;
  DType type;
  double bw_eff;  // how close its inner loop gets to peak bandwidth
  bool xf32;      // reads f32 activations (no activation quantisation; slower)
};

// Ids as ops/quant/quant_cuda.h names them: cuda.matvec.<type> reads the activation
// format ggml pairs with the type (Q8_0 -> q8_0, K/IQ -> q8_k, float -> f32);
// .xf32 reads f32 activations (a numerics choice, picked only by --override).
constexpr MatvecVariant kMatvec[] = {
    {"cuda.matvec.q8_0", DType::Q8_0, 0.85, false},     {"cuda.matvec.q4_k", DType::Q4_K, 0.78, false},
    {"cuda.matvec.q2_k", DType::Q2_K, 0.72, false},     {"cuda.matvec.iq2_xxs", DType::IQ2_XXS, 0.65, false},
    {"cuda.matvec.f16", DType::F16, 0.85, false},       {"cuda.matvec.bf16", DType::BF16, 0.6, false},
    {"cuda.matvec.f32", DType::F32, 0.85, false},       {"cuda.matvec.q8_0.xf32", DType::Q8_0, 0.5, true},
    {"cuda.matvec.q4_k.xf32", DType::Q4_K, 0.45, true}, {"cuda.matvec.q2_k.xf32", DType::Q2_K, 0.45, true},
    {"cuda.matvec.iq2_xxs.xf32", DType::IQ2_XXS, 0.4, true},
};

// Rows of K must be whole quantisation blocks.
std::string whole_blocks(const KernelShape& s) {
  for (DType t : s.wtypes)
    if (s.k % traits(t).block != 0) return str("k=", s.k, " is not a multiple of the ", dtype_name(t), " block");
  return "";
}

bool is_int_quant(DType t) { return t != DType::F16 && t != DType::BF16 && t != DType::F32; }

// Products a node computes: a paired matmul (two weights of one dtype and shape reading
// one input, planner/graph/op_graph.h pairs_in_one_node) computes one per weight; its
// shape's m is one weight's rows, its bytes and flops count both.
double products(const KernelShape& s) {
  return s.op == OpKind::matmul && s.wtypes.size() > 1 ? static_cast<double>(s.wtypes.size()) : 1.0;
}

// GEMM paths run a pair as one GEMM per weight, one after the other: the pair costs
// `products` times one product's cost. One product has one weight's bytes and flops, and
// of the activations the input (k per token, read by each GEMM) and its own output (m):
// k + m of the node's k + n*m elements per token (input and outputs share an element size).
using CostFn = std::function<KernelCost(const KernelShape&, const DeviceRates&)>;
CostFn per_product(CostFn one) {
  return [one](const KernelShape& s, const DeviceRates& r) {
    const double n = products(s);
    if (n == 1) return one(s, r);
    KernelShape p = s;
    p.wtypes.resize(1);
    p.weight_bytes /= n;
    p.host_weight_bytes /= n;
    p.act_bytes *= static_cast<double>(s.k + s.m) / static_cast<double>(s.k + n * s.m);
    p.flops /= n;
    KernelCost c = one(p, r);
    c.us *= n;  // the workspace is one GEMM's: the GEMMs run in turn and reuse it
    return c;
  };
}

// The weight tile cuBLAS paths dequantise into at a time (bounds the workspace).
constexpr int64_t kDequantTileRows = 16384;

KernelInfo matvec(const MatvecVariant& v, OpKind op) {
  KernelInfo k;
  const bool grouped = op == OpKind::grouped_matmul;
  std::string tail = std::string(v.id).substr(std::string("cuda.matvec.").size());
  k.id = grouped ? "cuda.grouped_matvec." + tail : v.id;
  k.op = op;
  k.backend = Backend::Cuda;
  k.min_cc = 70;
  k.min_tokens = 1;
  k.dtypes = {v.type};
  k.summary = std::string(grouped ? "per-group " : "") + "warp-per-row matvec over " + dtype_name(v.type) +
              (v.xf32 ? " weights with f32 activations" : " weights") + ", one slot per token (each re-reads the weight)";
  k.check = whole_blocks;
  // Every matvec kernel (tuned, float and generic; ops/quant/matvec.cu) waits for the
  // previous kernel (griddepcontrol.wait) before it reads x or the ids or writes y. Dense
  // calls fetch their first weights before that wait; grouped calls read the group
  // table as expert ids, so they wait first and only hide the launch.
  k.overlap_min_cc = kOverlapMinCc;
  const double bw_eff = v.bw_eff;
  const bool intq = is_int_quant(v.type) && !v.xf32;
  // A pair is one launch over both weights' rows: its bytes, flops and rows count both,
  // with one launch overhead and one activation read.
  k.cost = [bw_eff, intq](const KernelShape& s, const DeviceRates& r) {
    const double rows = static_cast<double>(s.m) * s.groups * products(s);
    // Beyond a few tokens the slots' weight reads stop sharing L2: count one read each.
    const double reads = std::max(1.0, static_cast<double>(s.tokens) / 8.0);
    cost::Pass p;
    p.dev_bytes = s.weight_bytes * reads + s.act_bytes;
    p.host_bytes = s.host_weight_bytes * reads;
    p.flops = s.flops;
    p.rate = r.fp32 * (intq ? 2.0 : 1.0);  // dp4a doubles integer dot throughput
    p.bw_eff = bw_eff;
    p.flop_eff = 0.5;
    if (const double dr = intq ? cost::decode_rate(s.wtypes, r) : 0; dr > 0) {
      p.flops = s.flops / 2;  // weights decoded (one multiply-add each)
      p.rate = dr;
      p.flop_eff = 1.0;
    }
    p.parallel = cost::parallel_fraction(rows / 4.0, r);
    KernelCost c{cost::us(p, r), 0, {}};
    c.launch = {{ceil_div(static_cast<int64_t>(s.m * products(s)), 4), static_cast<uint32_t>(s.groups), 1},
                {32, 4, 1}, 0};
    return c;
  };
  return k;
}

KernelInfo dequant_cublas(OpKind op) {
  KernelInfo k;
  const bool grouped = op == OpKind::grouped_matmul;
  k.id = grouped ? "cuda.grouped_gemm.dequant_cublas_f16" : "cuda.gemm.dequant_cublas_f16";
  k.op = op;
  k.backend = Backend::Cuda;
  k.min_cc = 70;
  k.any_dequant = true;
  k.summary = "dequantise weight tiles to F16, then cuBLAS GEMM on tensor cores (F32 accumulate)";
  // Grouped: one GEMM per group over that group's columns of x (ops/linear/linear.cu).
  k.check = [](const KernelShape& s) {
    for (DType t : s.wtypes)
      if (t == DType::F32) return std::string("F32 weights have no dequantising GEMM path (cuda.matvec.f32 serves them)");
    return whole_blocks(s);
  };
  k.cost = per_product([](const KernelShape& s, const DeviceRates& r) {
    const double rows = static_cast<double>(s.m) * s.groups;
    const double f16_weights = rows * s.k * 2.0;
    const double tiles = std::ceil(rows / kDequantTileRows);
    cost::Pass convert;  // activations F32 -> F16
    convert.dev_bytes = static_cast<double>(s.tokens) * s.k * s.groups * 6.0;
    convert.parallel = cost::parallel_fraction(convert.dev_bytes / 4096, r);
    cost::Pass dequant;  // weights -> F16 tile (read quantised, write F16)
    dequant.dev_bytes = s.weight_bytes + f16_weights;
    dequant.host_bytes = s.host_weight_bytes;
    dequant.bw_eff = 0.75;
    dequant.parallel = cost::parallel_fraction(rows / 8.0, r);
    cost::Pass gemm;  // read F16 weights + activations, write F32 output
    gemm.dev_bytes = f16_weights + s.act_bytes;
    gemm.flops = s.flops;
    gemm.rate = r.fp16;
    gemm.flop_eff = 0.7;
    gemm.parallel = cost::gemm_parallel(std::ceil(rows / 128.0) * std::ceil(s.tokens / 128.0), s.k, r);
    double us = cost::us(convert, r) + cost::us(dequant, r) + cost::us(gemm, r);
    us += (tiles - 1) * 2 * r.launch_us;
    us += (s.groups - 1) * 2 * r.launch_us;  // a GEMM and a conversion per group
    // Workspace: one group's f16 activations and one f16 weight tile (groups run in turn).
    const double tile_bytes = std::min<double>(static_cast<double>(s.m), kDequantTileRows) * s.k * 2.0;
    return KernelCost{us, static_cast<uint64_t>(tile_bytes + static_cast<double>(s.tokens) * s.k * 2.0), {}};
  });
  return k;
}

KernelInfo int8_tc(OpKind op) {
  KernelInfo k;
  const bool grouped = op == OpKind::grouped_matmul;
  k.id = grouped ? "cuda.grouped_gemm.int8_tc" : "cuda.gemm.int8_tc";
  k.op = op;
  k.backend = Backend::Cuda;
  k.min_cc = 80;
  k.min_tokens = 2;
  k.dtypes = {DType::Q8_0};
  k.summary = "Q8_0 weights x Q8-quantised activations on int8 tensor cores, per-block scales in F32";
  k.implemented = false;
  k.check = whole_blocks;
  k.cost = per_product([](const KernelShape& s, const DeviceRates& r) {
    const double rows = static_cast<double>(s.m) * s.groups;
    const double q8_act = static_cast<double>(s.tokens) * s.k * s.groups * (34.0 / 32.0);
    cost::Pass quant;  // activations F32 -> Q8 blocks
    quant.dev_bytes = static_cast<double>(s.tokens) * s.k * s.groups * 4.0 + q8_act;
    quant.parallel = cost::parallel_fraction(quant.dev_bytes / 4096, r);
    cost::Pass gemm;
    const double token_tiles = std::ceil(s.tokens / 64.0);
    gemm.dev_bytes = s.weight_bytes * std::min(token_tiles, 2.0) + q8_act + static_cast<double>(s.tokens) * rows * 4;
    gemm.host_bytes = s.host_weight_bytes * token_tiles;
    gemm.flops = s.flops;
    gemm.rate = r.int8;
    gemm.flop_eff = 0.45;
    gemm.parallel = cost::gemm_parallel(std::ceil(rows / 128.0) * token_tiles, s.k, r);
    KernelCost c{cost::us(quant, r) + cost::us(gemm, r), static_cast<uint64_t>(q8_act), {}};
    c.launch = {{ceil_div(static_cast<int64_t>(rows), 128), static_cast<uint32_t>(token_tiles), 1}, {128, 1, 1},
                48 * 1024};
    return c;
  });
  return k;
}

KernelInfo cublas_float(OpKind op) {
  KernelInfo k;
  const bool grouped = op == OpKind::grouped_matmul;
  k.id = grouped ? "cuda.grouped_gemm.cublas" : "cuda.gemm.cublas";
  k.op = op;
  k.backend = Backend::Cuda;
  k.min_cc = 70;
  k.dtypes = {DType::F16, DType::BF16};
  k.summary = "F16/BF16 weights straight into cuBLAS (activations converted to the weight type)";
  k.implemented = false;
  k.cost = per_product([](const KernelShape& s, const DeviceRates& r) {
    const double rows = static_cast<double>(s.m) * s.groups;
    cost::Pass convert;
    convert.dev_bytes = static_cast<double>(s.tokens) * s.k * s.groups * 6.0;
    convert.parallel = cost::parallel_fraction(convert.dev_bytes / 4096, r);
    cost::Pass gemm;
    gemm.dev_bytes = s.weight_bytes + s.act_bytes;
    gemm.host_bytes = s.host_weight_bytes;
    gemm.flops = s.flops;
    gemm.rate = s.wtypes.empty() || s.wtypes[0] == DType::F16 ? r.fp16 : r.bf16;
    gemm.flop_eff = 0.7;
    gemm.parallel = cost::gemm_parallel(std::ceil(rows / 128.0) * std::ceil(s.tokens / 128.0), s.k, r);
    return KernelCost{cost::us(convert, r) + cost::us(gemm, r),
                      static_cast<uint64_t>(static_cast<double>(s.tokens) * s.k * s.groups * 2.0), {}};
  });
  return k;
}

}  // namespace

// Every other type fp can dequantise has a generic matvec (f32 activations through the
// shared block decoder; ops/quant/quant_cuda.h): correct, untuned.
std::vector<MatvecVariant> generic_matvecs() {
  static const std::vector<std::pair<std::string, DType>> types = [] {
    std::vector<std::pair<std::string, DType>> v;
    for (uint32_t id = 0; id < 64; ++id) {
      const auto t = type_traits(id);
      if (!t || !t->dequant || t->type == DType::Q8_K) continue;  // Q8_K is an activation format
      bool tuned = false;
      for (const auto& m : kMatvec) tuned |= m.type == t->type;
      if (tuned) continue;
      std::string name = t->name;
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      v.emplace_back("cuda.matvec." + name, t->type);
    }
    return v;
  }();
  std::vector<MatvecVariant> out;
  for (const auto& [id, type] : types) out.push_back({id.c_str(), type, 0.45, true});
  return out;
}

void register_matmul_kernels(std::vector<KernelInfo>& out) {
  out.push_back(entries::cpu_reference(OpKind::matmul, "reference dot products over dequantised rows (ops/quant/dot.h)"));
  out.push_back(entries::cpu_reference(OpKind::grouped_matmul, "reference per-group matmul"));
  const std::vector<MatvecVariant> generic = generic_matvecs();
  for (OpKind op : {OpKind::matmul, OpKind::grouped_matmul}) {
    for (const auto& v : kMatvec) out.push_back(matvec(v, op));
    for (const auto& v : generic) out.push_back(matvec(v, op));
    out.push_back(dequant_cublas(op));
    out.push_back(int8_tc(op));
    out.push_back(cublas_float(op));
  }
}

}  // namespace fp
