// The CUDA executor's buffer table (planner/memory/cuda_buffers.h) against the CPU-side
// facts it mirrors, checkable without a GPU: the RoPE tables the executor uploads, the
// compressor shapes of every layer kind, and the state the CPU executor keeps. (The GPU
// suite checks that the executor allocates exactly the table: tests/gpu/cuda_engine_test.)
#include <doctest/doctest.h>

#include "ops/rope/rope.h"
#include "planner/memory/cuda_buffers.h"
#include "planner/model/model.h"
#include "runtime/cpu/executor.h"

using namespace fp;

namespace {

const std::string kTiny = std::string(FLASHPLAN_TEST_DATA) + "/hf/seed1/tiny.gguf";

}  // namespace

TEST_CASE("cuda buffer table: rope tables, compressors and rings follow the model") {
  const Model m = Model::open(kTiny);
  const ModelConfig& c = m.config();
  CudaBufferOptions o;
  o.max_step = 300;
  o.max_context = 1024;
  const CudaBuffers b = cuda_buffers(c, o);
  // The executor uploads ref::Rope(rope_params(c, compressed)).inv_freq() for both.
  CHECK(size_t(b.rope_main) == ref::Rope(cpu::rope_params(c, false)).inv_freq().size());
  CHECK(size_t(b.rope_comp) == ref::Rope(cpu::rope_params(c, true)).inv_freq().size());
  REQUIRE(b.layers.size() == c.n_layer);
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    CAPTURE(l);
    const CudaBuffers::Layer& L = b.layers[l];
    CHECK(L.raw_rows == int64_t(c.sliding_window) + o.max_step);
    CHECK(L.raw_dim == c.head_dim);
    const LayerKind kind = c.layer_kind(l);
    CHECK((L.attn.ratio != 0) == (kind != LayerKind::SWA));
    CHECK((L.index.ratio != 0) == (kind == LayerKind::CSA));
    if (kind == LayerKind::SWA) continue;
    const int64_t r = c.compress_ratio(l);
    CHECK(L.attn.ratio == r);
    CHECK(L.attn.width == (r == 4 ? 2 : 1) * int64_t(c.head_dim));  // overlapping windows at ratio 4
    CHECK(L.attn.max_rows == (o.max_context + r - 1) / r);
    CHECK(L.attn.cap >= r + o.max_step);  // a whole step fits the ring
    if (kind == LayerKind::CSA) CHECK(L.index.dim == c.indexer_head_dim);
  }
  // The per-step buffers scale with the step, the state with the context.
  CudaBufferOptions longer = o;
  longer.max_context = 4096;
  const CudaBuffers bl = cuda_buffers(c, longer);
  CHECK(bl.activation_bytes() == b.activation_bytes());
  CHECK(bl.state_bytes() > b.state_bytes());
  CudaBufferOptions one = o;
  one.max_step = 1;
  CHECK(cuda_buffers(c, one).activation_bytes() < b.activation_bytes());
}
