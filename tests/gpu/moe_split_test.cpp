// The routed experts split over devices (MoeArgs::slots, ops/moe/moe_cuda.h), checked on
// one GPU: the two halves of a layer's experts run as two "devices" would, each writing
// its slots' outputs and zeros in the other's; their element-wise sum (what the NCCL
// all-reduce computes: x + 0 on every element) through moe_combine must equal the
// one-GPU moe output bit for bit, on the matvec path (decode, a few tokens) and on the
// grouped path (prefill). This is the exactness argument of runtime/cuda/MULTI_GPU.md,
// without NCCL or a second GPU.
#include <doctest/doctest.h>

#include <cuda_runtime.h>

#include <cstring>
#include <numeric>

#include "ops/moe/moe_cuda.h"
#include "ops/quant/quant_cuda.h"
#include "tests/gpu/ops_util.h"

using namespace fp;
using namespace fp::test;

namespace {

struct Layer {
  DType gt, dt;
  int64_t NE, dim, ff;
  DevBuf g, u, d;
  Layer(DType gt_, DType dt_, int64_t NE_, int64_t dim_, int64_t ff_, uint64_t seed)
      : gt(gt_), dt(dt_), NE(NE_), dim(dim_), ff(ff_), g(size_t(row_bytes(gt_, dim_) * ff_ * NE_)),
        u(size_t(row_bytes(gt_, dim_) * ff_ * NE_)), d(size_t(row_bytes(dt_, ff_) * dim_ * NE_)) {
    cuda::fill_random(gt, g.p, NE * ff * dim, {seed, 0.05f, 0.0f, 0}, nullptr);
    cuda::fill_random(gt, u.p, NE * ff * dim, {seed + 1, 0.05f, 0.0f, 0}, nullptr);
    cuda::fill_random(dt, d.p, NE * dim * ff, {seed + 2, 0.05f, 0.0f, 0}, nullptr);
  }
  // Experts [first, first + count) as a device holding only them sees them.
  ref::Weight gate(int64_t first, int64_t count) const { return part(g, gt, ff, dim, first, count, "gate"); }
  ref::Weight up(int64_t first, int64_t count) const { return part(u, gt, ff, dim, first, count, "up"); }
  ref::Weight down(int64_t first, int64_t count) const { return part(d, dt, dim, ff, first, count, "down"); }

 private:
  static ref::Weight part(const DevBuf& b, DType t, int64_t rows, int64_t cols, int64_t first, int64_t count,
                          const char* name) {
    ref::Weight w = dev_weight(b, t, rows, cols, count, name);
    w.data += first * rows * row_bytes(t, cols);
    return w;
  }
};

// One moe call over experts [first, first + count) of `x`; `slots` null: the one-GPU
// moe (combined output), else the per-slot outputs of those experts' slots.
std::vector<float> run(const Layer& x, bool grouped, const DevBuf& du, const DevBuf& dids, const DevBuf& dw,
                       int64_t n, int64_t K, int64_t first, int64_t count, bool slots) {
  const int64_t q = n * K;
  DevBuf out(size_t(n * x.dim) * 4), sl(size_t(q * x.dim) * 4), lids(size_t(q) * 4),
      work(size_t(cuda::moe_work_floats(n, K, x.dim, x.ff)) * 4),
      gwork(size_t(cuda::moe_grouped_work_bytes(n, K, x.dim, x.ff, x.NE))),
      qact(size_t((q * std::max(x.dim, x.ff) + 255) / 256 * 292 + 4096)), iota(4);
  cuda::LinearWorkspace ws;
  ws.qact = qact.p;
  ws.qact_bytes = int64_t(qact.bytes);
  ws.iota = iota.as<int32_t>();
  ws.iota_n = 1;
  ws.iota_groups = 1;
  cuda::MoeArgs m;
  m.u = du.as<float>();
  m.n = n;
  m.k = K;
  m.ids = dids.as<int32_t>();
  m.weights = dw.as<float>();
  m.gate = x.gate(first, count);
  m.up = x.up(first, count);
  m.down = x.down(first, count);
  m.limit = 10.0f;
  m.out = out.as<float>();
  m.work = work.as<float>();
  if (slots) {
    m.slots = sl.as<float>();
    m.local_ids = lids.as<int32_t>();
    m.expert_first = first;
  }
  if (grouped) {
    m.grouped_work = gwork.p;
    m.grouped_work_bytes = int64_t(gwork.bytes);
    cuda::moe_grouped(m, nullptr);
  } else {
    cuda::moe(m, ws, nullptr);
  }
  GPU_CHECK(cudaDeviceSynchronize());
  return slots ? sl.get<float>(size_t(q * x.dim)) : out.get<float>(size_t(n * x.dim));
}

}  // namespace

TEST_CASE("moe expert_split on one GPU: two halves' slot outputs summed and combined equal the one-GPU moe bit for bit") {
  std::mt19937_64 rng(77);
  const int64_t NE = 16, dim = 512, ff = 256, K = 6;
  struct Case {
    DType g, d;
    bool grouped;
    int64_t n;
  };
  const std::vector<Case> cases = {{DType::IQ2_XXS, DType::Q2_K, false, 1}, {DType::IQ2_XXS, DType::Q2_K, false, 5},
                                   {DType::Q8_0, DType::Q8_0, false, 3},    {DType::IQ2_XXS, DType::Q2_K, true, 300},
                                   {DType::Q4_K, DType::Q8_0, true, 40}};
  for (const Case& c : cases) {
    CAPTURE(dtype_name(c.g));
    CAPTURE(c.grouped);
    CAPTURE(c.n);
    const Layer x(c.g, c.d, NE, dim, ff, 500 + uint64_t(c.n));
    const int64_t n = c.n, q = n * K;
    std::vector<int32_t> ids(static_cast<size_t>(q));
    for (int64_t t = 0; t < n; ++t) {
      std::vector<int32_t> all(static_cast<size_t>(NE));
      std::iota(all.begin(), all.end(), 0);
      std::shuffle(all.begin(), all.end(), rng);
      for (int64_t i = 0; i < K; ++i) ids[size_t(t * K + i)] = all[size_t(i)];
    }
    const DevBuf du(randn(size_t(n * dim), rng)), dids(ids), dw(randn(size_t(q), rng, 0.3f, 0.5f));
    const std::vector<float> one = run(x, c.grouped, du, dids, dw, n, K, 0, NE, false);

    std::vector<float> sum(static_cast<size_t>(q * dim), 0.0f);
    for (int64_t h = 0; h < 2; ++h) {
      const int64_t first = h * NE / 2, count = NE / 2;
      const std::vector<float> s = run(x, c.grouped, du, dids, dw, n, K, first, count, true);
      int64_t wrong_zeros = 0, unwritten = 0;
      for (int64_t i = 0; i < q; ++i) {
        const bool mine = ids[size_t(i)] >= first && ids[size_t(i)] < first + count;
        for (int64_t e = 0; e < dim; ++e) {
          const float v = s[size_t(i * dim + e)];
          if (!mine && (v != 0.0f || std::signbit(v))) ++wrong_zeros;
          if (mine && !std::isfinite(v)) ++unwritten;
          sum[size_t(i * dim + e)] += v;  // the all-reduce's sum: one non-zero term per element
        }
      }
      CHECK_MESSAGE(wrong_zeros == 0, "half ", h, ": other devices' slots not +0");
      CHECK_MESSAGE(unwritten == 0, "half ", h, ": own slots not finite (unwritten?)");
    }
    DevBuf dsum(sum), dout(size_t(n * dim) * 4);
    cuda::moe_combine(dsum.as<float>(), dw.as<float>(), n, K, dim, dout.as<float>(), nullptr);
    const std::vector<float> split = dout.get<float>(size_t(n * dim));
    CHECK(std::memcmp(split.data(), one.data(), one.size() * sizeof(float)) == 0);
  }
}
