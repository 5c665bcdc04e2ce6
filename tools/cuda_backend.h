// The commands' door to the CUDA backend (`--backend cuda`), declared CUDA-free so that
// tools/engine_args.h can name it; defined in tools/cuda_backend_cuda.cpp, which is only
// compiled (and FLASHPLAN_HAVE_CUDA only defined) when the CUDA backend is built.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "ops/numerics/mode.h"
#include "planner/plan_io/plan_io.h"
#include "runtime/engine.h"

namespace fp::cli {

struct CudaEngineArgs {
  std::string model;
  std::string mtp_file;
  Numerics numerics = Numerics::plain;
  int64_t ctx = 4096, chunk = 256;
  bool graphs = true;
  bool host_sampling = false;              // --host-sampling
  std::shared_ptr<const LoadedPlan> plan;  // kernels and placement from it (null: the built-in choice)
  std::optional<uint64_t> random_seed;     // --weights random:SEED
  bool progress = false;                   // the loader's progress bar on stderr
};
std::unique_ptr<Engine> open_cuda_engine(const CudaEngineArgs& a);

// `--check-against cpu`: runs `ids` through the CUDA engine and the CPU reference engine
// with per-layer traces, prints each node's relative L2 / max abs difference (embedding,
// every layer's residual stream, the head's normed input, the logits) and names the
// first node beyond its bound. Returns false when one is.
bool check_cuda_against_cpu(const CudaEngineArgs& a, std::span<const int32_t> ids);

}  // namespace fp::cli
