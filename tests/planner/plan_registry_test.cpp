// The kernel registry: ids unique and stable, every op kind has a CPU reference kernel
// and a CUDA kernel, the contract ids the executors implement are registered, validity
// rules (backend, compute capability, tokens, dtypes) hold, and the cost model puts the
// crossovers where the design says: matvec for decode, tensor cores for long prefill.
#include <doctest/doctest.h>

#include <set>

#include "ops/registry/kernel_registry.h"
#include "plan_test_util.h"

using namespace fp;

namespace {

KernelShape matmul(uint32_t t, int64_t m, int64_t k, DType w) {
  KernelShape s;
  s.op = OpKind::matmul;
  s.tokens = t;
  s.m = m;
  s.k = k;
  s.wtypes = {w};
  s.weight_bytes = double(m) * row_bytes(w, k);
  s.act_bytes = 4.0 * t * (m + k);
  s.flops = 2.0 * t * m * k;
  return s;
}

double cost(const char* id, const KernelShape& s, const DeviceRates& r) {
  const KernelInfo* k = find_kernel(id);
  REQUIRE(k != nullptr);
  // Kernels registered ahead of their implementation keep a cost model worth checking.
  const std::string why = kernel_rejection(*k, s, r);
  REQUIRE((why.empty() || why == kNotImplemented));
  return k->cost(s, r).us;
}

}  // namespace

TEST_CASE("registry: unique sorted ids, a cpu and a cuda kernel for every op") {
  const auto& all = kernel_registry();
  REQUIRE(!all.empty());
  std::set<std::string> ids;
  for (size_t i = 0; i < all.size(); ++i) {
    CHECK(ids.insert(all[i].id).second);
    if (i) CHECK(all[i - 1].id < all[i].id);
    CHECK(!all[i].summary.empty());
  }
  for (int op = 0; op < kOpKindCount; ++op) {
    CAPTURE(op_kind_name(static_cast<OpKind>(op)));
    bool cuda = false;
    for (const auto& k : all) cuda |= k.op == static_cast<OpKind>(op) && k.backend == Backend::Cuda;
    CHECK(cuda);
    // Collectives and moe_combine exist only in multi-GPU plans: CUDA entries, no CPU reference.
    if (is_multi_gpu_only(static_cast<OpKind>(op))) {
      CHECK(find_kernel(std::string("cpu.") + op_kind_name(static_cast<OpKind>(op))) == nullptr);
      continue;
    }
    const KernelInfo* cpu = find_kernel(std::string("cpu.") + op_kind_name(static_cast<OpKind>(op)));
    REQUIRE(cpu != nullptr);
    CHECK(cpu->backend == Backend::Cpu);
    CHECK(cpu->op == static_cast<OpKind>(op));
  }
  // Ids the CUDA side implements (ops/quant/quant_cuda.h names the matvec ones).
  for (const char* id : {"cuda.matvec.q8_0", "cuda.matvec.iq2_xxs", "cuda.matvec.q2_k", "cuda.matvec.q4_k",
                         "cuda.matvec.f16", "cuda.matvec.f32", "cuda.gemm.dequant_cublas_f16",
                         "cuda.grouped_gemm.dequant_cublas_f16", "cuda.grouped_matvec.q8_0", "cuda.attention.decode", "cuda.attention.prefill",
                         "cuda.moe.matvec", "cuda.indexer_topk.decode", "cuda.hc_pre", "cuda.sample",
                         "cuda.nccl.all_reduce", "cuda.moe.combine"}) {
    REQUIRE_MESSAGE(find_kernel(id) != nullptr, id);
    CHECK_MESSAGE(find_kernel(id)->implemented, id);
  }
  // Registered ahead of their kernels: visible, never planned (the all-gather only in
  // multi-GPU plans with a split head, which the CUDA executor refuses).
  for (const char* id : {"cuda.gemm.int8_tc", "cuda.grouped_gemm.int8_tc", "cuda.gemm.cublas", "cuda.grouped_gemm.cublas",
                         "cuda.moe.grouped_int8_tc",
                         "cuda.moe.grouped_dequant_cublas", "cuda.nccl.all_gather"}) {
    REQUIRE_MESSAGE(find_kernel(id) != nullptr, id);
    CHECK_MESSAGE(!find_kernel(id)->implemented, id);
  }
  CHECK(find_kernel("cuda.no_such_kernel") == nullptr);
  // op names round-trip
  for (int op = 0; op < kOpKindCount; ++op)
    CHECK(op_kind_from_name(op_kind_name(static_cast<OpKind>(op))) == static_cast<OpKind>(op));
}

TEST_CASE("registry: validity rules") {
  const DeviceRates h100 = test::shipped_profile("h100-sxm-80gb").rates();
  const DeviceRates cpu = test::shipped_profile("cpu").rates();
  const KernelInfo& mv = *find_kernel("cuda.matvec.q8_0");
  CHECK(kernel_rejection(mv, matmul(1, 4096, 4096, DType::Q8_0), h100) == "");
  CHECK(kernel_rejection(mv, matmul(16, 4096, 4096, DType::Q8_0), h100) == "");  // any token count, slot by slot
  CHECK(kernel_rejection(mv, matmul(1, 4096, 4096, DType::Q4_K), h100).find("Q4_K") != std::string::npos);
  CHECK(kernel_rejection(mv, matmul(1, 4096, 4096, DType::Q8_0), cpu).find("cuda device") != std::string::npos);
  CHECK(kernel_rejection(mv, matmul(1, 4096, 4010, DType::Q8_0), h100).find("multiple") != std::string::npos);
  DeviceRates old = h100;
  old.cc = 75;
  CHECK(kernel_rejection(*find_kernel("cuda.attention.prefill"), KernelShape{OpKind::attention}, old)
            .find("compute capability") != std::string::npos);
  CHECK(kernel_rejection(*find_kernel("cuda.gemm.int8_tc"), matmul(64, 4096, 4096, DType::Q8_0), h100) ==
        kNotImplemented);
  CHECK(kernel_rejection(*find_kernel("cuda.gemm.dequant_cublas_f16"), matmul(64, 4096, 4096, DType::F32), h100)
            .find("F32") != std::string::npos);
  // The CPU reference reads every dequantisable dtype.
  const KernelInfo& ref = *find_kernel("cpu.matmul");
  for (DType t : {DType::Q8_0, DType::Q2_K, DType::Q4_K, DType::IQ2_XXS, DType::F16, DType::F32})
    CHECK(kernel_rejection(ref, matmul(3, 256, 1024, t), cpu) == "");
}

TEST_CASE("registry: attention's launch record and L2 bytes follow the plan's KV dtype") {
  const DeviceRates h100 = test::shipped_profile("h100-sxm-80gb").rates();
  KernelShape s{OpKind::attention};
  s.tokens = 2048;
  s.heads = 64;
  s.head_dim = 512;
  s.rows = 640;
  s.flops = 4.0 * s.tokens * s.heads * s.rows * s.head_dim;
  const KernelInfo& tc = *find_kernel("cuda.attention.prefill");
  const KernelInfo& dec = *find_kernel("cuda.attention.decode");
  s.kv_elem_bytes = 4;
  const KernelCost f32 = tc.cost(s, h100);
  const double dec32 = dec.cost(s, h100).us;
  s.kv_elem_bytes = 2;
  const KernelCost f16 = tc.cost(s, h100);
  // attention_tc.cu's tiles at head_dim 512: Q [16][516] + P [16][36] f32, K [32][516] f32
  // or [32][520] F16.
  CHECK(f32.launch.smem_bytes == (16 * 516 + 16 * 36) * 4 + 32 * 516 * 4);
  CHECK(f16.launch.smem_bytes == (16 * 516 + 16 * 36) * 4 + 32 * 520 * 2);
  // The decode kernel reads each token's rows once per head: half the bytes, less time.
  CHECK(dec.cost(s, h100).us < dec32);
  CHECK(s.key().find(" kv=2") != std::string::npos);
}

TEST_CASE("registry: cost crossovers follow bytes and FLOPs") {
  const DeviceRates h100 = test::shipped_profile("h100-sxm-80gb").rates();
  const DeviceRates h200 = test::shipped_profile("h200-141gb").rates();
  // Decode: a bandwidth-bound matvec beats dequantise-then-cuBLAS.
  const KernelShape d = matmul(1, 32768, 1024, DType::Q8_0);
  CHECK(cost("cuda.matvec.q8_0", d, h100) < cost("cuda.gemm.dequant_cublas_f16", d, h100));
  // More bandwidth, less time.
  CHECK(cost("cuda.matvec.q8_0", d, h200) < cost("cuda.matvec.q8_0", d, h100));
  // Twice the bytes cost more.
  CHECK(cost("cuda.matvec.q8_0", matmul(1, 65536, 1024, DType::Q8_0), h100) > cost("cuda.matvec.q8_0", d, h100));
  // Long prefill of Q8_0 weights: int8 tensor cores beat the dequantise + F16 path.
  const KernelShape p = matmul(2048, 4096, 4096, DType::Q8_0);
  CHECK(cost("cuda.gemm.int8_tc", p, h100) < cost("cuda.gemm.dequant_cublas_f16", p, h100));
  // On a card without fast int8 the F16 path wins.
  DeviceRates slow_int8 = h100;
  slow_int8.int8 = h100.fp16 / 8;
  CHECK(cost("cuda.gemm.int8_tc", p, slow_int8) > cost("cuda.gemm.dequant_cublas_f16", p, slow_int8));
  // Host-mapped weights are read at the host link's rate.
  KernelShape host = d;
  host.host_weight_bytes = host.weight_bytes;
  host.weight_bytes = 0;
  CHECK(cost("cuda.matvec.q8_0", host, h100) > 10 * cost("cuda.matvec.q8_0", d, h100));
}
