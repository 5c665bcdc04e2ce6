// The kernel registry: CUDA-free metadata for every kernel variant, CPU and CUDA, so
// that a plan for any GPU can be compiled on any machine (DESIGN.md "Kernel selection").
//
// Each op family registers its variants in ops/<family>/registry.cpp: a stable id that
// never changes meaning ("cuda.matvec.q8_0"), the op and weight dtypes it serves, the
// smallest compute capability it needs, the tokens-per-step range it suits, whether it
// may be captured into a CUDA graph, and a cost function of (shape, device rates) built
// from bytes moved and FLOPs. The planner picks the cheapest valid variant per node;
// measured timings in a device profile override the cost function.
//
// Ids are the contract with the executors: the CUDA executor maps "cuda.*" ids to
// launchers, the CPU executor maps "cpu.*" ids (one per op kind) to reference functions.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "ops/quant/types.h"
#include "ops/registry/op_kind.h"

namespace fp {

enum class Backend : uint8_t { Cpu = 0, Cuda = 1 };
const char* backend_name(Backend b);

// What a cost function knows about the device: rates in SI units (bytes/s, flop/s),
// measured figures already applied. Filled by the planner from a device profile.
struct DeviceRates {
  Backend backend = Backend::Cuda;
  uint32_t cc = 0;              // compute capability * 10 (9.0 -> 90); 0 for CPU
  uint32_t sm_count = 0;        // SMs (GPU) or threads (CPU)
  double bandwidth = 0;         // device memory, bytes/s
  double host_link = 0;         // host memory read from the device (PCIe / C2C), bytes/s
  double l2_bytes = 0;
  double fp32 = 0;              // CUDA-core / CPU vector FP32, flop/s
  double fp16 = 0, bf16 = 0, fp8 = 0, int8 = 0;  // dense tensor-core rates, FP32 accumulate
  double launch_us = 0;         // per-kernel overhead inside a captured graph / CPU call
  uint32_t devices = 1;         // GPUs of the plan (collectives run over all of them)
  double gpu_link = 0;          // GPU-to-GPU bandwidth per direction per GPU, bytes/s
  double collective_latency_us = 0;  // fixed cost of one collective (launch + synchronisation)
};

// The shape of one node as the cost functions see it. The op graph fills it; `key()` is
// the shape bucket measured timings are filed under (schemas/device_profile.md).
struct KernelShape {
  OpKind op = OpKind::matmul;
  uint32_t tokens = 1;          // rows processed per step
  int64_t m = 0;                // output features per token (per group / per expert)
  int64_t k = 0;                // input features per token
  int64_t groups = 1;           // grouped_matmul groups; moe: experts used per token
  int64_t experts = 0;          // moe: experts in the layer
  int64_t heads = 0, head_dim = 0;  // attention / indexer
  int64_t rows = 0;             // attention / indexer: visible KV rows at the cost context
  int64_t kv_elem_bytes = 0;    // attention: bytes of a stored KV element (plan kv_dtype: 4 F32, 2 F16)
  std::vector<DType> wtypes;    // weight dtypes, in node weight order (empty: no weights)
  double weight_bytes = 0;      // device-resident weight bytes read per step (moe: experts touched)
  double host_weight_bytes = 0; // host-mapped weight bytes read per step (disjoint from the above)
  double act_bytes = 0;         // activation / cache bytes read + written per step
  double flops = 0;             // arithmetic per step
  double link_bytes = 0;        // collectives: bytes of the buffer reduced / gathered per step

  std::string key() const;
};

struct Launch {
  uint32_t grid[3] = {0, 0, 0};   // all zero: the kernel sizes itself (CPU, cuBLAS)
  uint32_t block[3] = {0, 0, 0};
  uint32_t smem_bytes = 0;
};

struct KernelCost {
  double us = 0;
  uint64_t workspace_bytes = 0;
  Launch launch;
};

struct KernelInfo {
  std::string id;               // stable: "cuda.matvec.q8_0", "cpu.matmul"
  OpKind op = OpKind::matmul;
  Backend backend = Backend::Cpu;
  uint32_t min_cc = 0;          // smallest compute capability * 10 (CUDA only)
  uint32_t min_tokens = 1, max_tokens = UINT32_MAX;
  std::vector<DType> dtypes;    // weight dtypes served; empty = any (or no weights)
  bool any_dequant = false;     // serves every dtype fp can dequantise
  bool capturable = true;       // may run inside a captured CUDA graph
  // Programmatic dependent launch (a plan node's overlap_prev): the smallest compute
  // capability * 10 at which its launcher can start it while the previous kernel in the
  // stream finishes, the kernel waiting for that one before it reads its inputs or writes
  // its outputs; 0 = never. PDL itself needs 9.0 (griddepcontrol): every launcher that
  // honours it (ops/core/pdl.cuh) says kOverlapMinCc.
  uint32_t overlap_min_cc = 0;
  // False for a variant registered (id, cost model) ahead of its kernel: the planner
  // rejects it ("not implemented in this build"), so no plan names it, and the CUDA
  // executor refuses a plan that does. Kept so ids and cost models stay visible.
  // Collectives are the exception: they are planned whether or not this build runs them
  // (a multi-GPU plan without them would not say what the step costs); the CUDA executor
  // refuses, naming node and id, a plan with one it does not implement.
  bool implemented = true;
  std::string summary;          // one line for `inspect`
  std::function<KernelCost(const KernelShape&, const DeviceRates&)> cost;
  // Extra validity beyond dtype / cc / tokens; returns "" when valid, else why not.
  std::function<std::string(const KernelShape&)> check;
};

// KernelInfo::overlap_min_cc of every kernel whose launcher takes a plan's overlap_prev:
// griddepcontrol (programmatic dependent launch) exists from compute capability 9.0.
inline constexpr uint32_t kOverlapMinCc = 90;

// The rejection of a variant whose kernel this build lacks (KernelInfo::implemented).
inline constexpr const char* kNotImplemented = "not implemented in this build";

// Every registered kernel, sorted by id (ids are unique; checked at first use).
const std::vector<KernelInfo>& kernel_registry();
const KernelInfo* find_kernel(std::string_view id);

// Why `k` cannot run `s` on `r` ("" when it can): backend, implemented, cc, token range,
// dtypes, check.
std::string kernel_rejection(const KernelInfo& k, const KernelShape& s, const DeviceRates& r);

// Why a node running `k` on a device of compute capability `cc` (* 10) cannot overlap
// the previous kernel ("" when it can): KernelInfo::overlap_min_cc.
std::string overlap_rejection(const KernelInfo& k, uint32_t cc);

// Registration entry points, one per op family (ops/<family>/registry.cpp).
void register_matmul_kernels(std::vector<KernelInfo>& out);
void register_attention_kernels(std::vector<KernelInfo>& out);
void register_compressor_kernels(std::vector<KernelInfo>& out);
void register_hc_kernels(std::vector<KernelInfo>& out);
void register_moe_kernels(std::vector<KernelInfo>& out);
void register_norm_kernels(std::vector<KernelInfo>& out);
void register_sample_kernels(std::vector<KernelInfo>& out);
void register_collective_kernels(std::vector<KernelInfo>& out);

}  // namespace fp
