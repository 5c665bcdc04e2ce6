// The rope, attention and compressor families on the GPU against their CPU references
// (ops/rope, ops/attention, ops/compressor, ops/numerics) on random data, outputs
// poisoned with NaN first. Bounds (rel L2 / max abs; NaN never passes):
//   rope rotate / inverse / head norm + rotate (YaRN too), any position   1e-6 / 1e-5
//   kv_rope_store plain                                                   1e-6 / 1e-5
//   kv_rope_store, compressor rows in official numerics: >= 99% of values bit-identical,
//     and 2e-3 / 0.25 overall (a 1-ulp difference before an FP8/FP4 rounding can move a
//     value by one code step)
//   attention with sinks (SWA, HCA, CSA selected / all rows; decode and prefill)  1e-5 / 1e-4
//   compressor rows plain                                                 1e-5 / 1e-4
#include <doctest/doctest.h>

#include <tuple>

#include "ops/attention/attention.h"
#include "ops/attention/attention_cuda.h"
#include "ops/compressor/compressor.h"
#include "ops/compressor/compressor_cuda.h"
#include "ops/core/half.h"
#include "ops/norm/norm.h"
#include "ops/numerics/numerics.h"
#include "ops/rope/rope.h"
#include "ops/rope/rope_cuda.h"
#include "tests/gpu/ops_util.h"

using namespace fp;
using namespace fp::test;

namespace {

const Bound kExact{1e-6, 1e-5};
const Bound kF32{1e-5, 1e-4};
const Bound kRounded{2e-3, 0.25};

ref::RopeParams yarn(int64_t n_rot) {
  ref::RopeParams p;
  p.n_rot = n_rot;
  p.base = 160000;
  p.yarn = true;
  p.factor = 16;
  p.orig_ctx = 65536;
  return p;
}

ref::RopeParams plain_rope(int64_t n_rot) {
  ref::RopeParams p;
  p.n_rot = n_rot;
  p.base = 10000;
  return p;
}

struct DevRope {
  DevBuf buf;
  cuda::RopeTab tab;
  explicit DevRope(const ref::Rope& r) : buf(r.inv_freq()) { tab = {buf.as<double>(), r.n_rot()}; }
};

// Fraction of bit-identical values.
double same_fraction(const std::vector<float>& a, const std::vector<float>& b) {
  size_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += same_bits(a[i], b[i]) ? 1 : 0;
  return a.empty() ? 1.0 : double(same) / double(a.size());
}

void check_rounded(const std::string& what, const std::vector<float>& got, const std::vector<float>& ref) {
  check_close(what, got, ref, kRounded);
  const double f = same_fraction(got, ref);
  INFO(what, ": ", f * 100, "% bit-identical");
  CHECK(f >= 0.99);
}

}  // namespace

TEST_CASE("gpu ops: rope rotate, inverse and head norm + rotate at any position") {
  std::mt19937_64 rng(21);
  const int64_t n = 4, heads = 67, D = 64;  // 67 heads: several pair blocks, a partial last one
  for (const auto& params : {plain_rope(16), yarn(16), yarn(64)}) {
    const ref::Rope rope(params);
    DevRope dr(rope);
    for (int64_t pos0 : {int64_t(0), int64_t(4093), int64_t(1048000)}) {
      for (auto op : {cuda::RopeOp::rotate, cuda::RopeOp::inverse, cuda::RopeOp::head_norm_rotate}) {
        CAPTURE(pos0);
        CAPTURE(int(op));
        auto x = randn(size_t(n * heads * D), rng, 2.0f);
        std::vector<float> ref = x;
        for (int64_t t = 0; t < n; ++t) {
          float* xt = ref.data() + t * heads * D;
          if (op == cuda::RopeOp::head_norm_rotate)
            for (int64_t h = 0; h < heads; ++h) ref::rms_norm_row(xt + h * D, nullptr, xt + h * D, D, 1e-6f);
          rope.apply(xt, heads, D, pos0 + t, op == cuda::RopeOp::inverse);
        }
        DevBuf dx(x);
        DevPos p(pos0);
        cuda::RopeArgs a;
        a.x = dx.as<float>();
        a.n = n;
        a.heads = heads;
        a.head_dim = D;
        a.tab = dr.tab;
        a.pos0 = p.ptr();
        a.op = op;
        cuda::rope(a, nullptr);
        check_close("rope", dx.get<float>(x.size()), ref, kExact);
      }
    }
  }
}

TEST_CASE("gpu ops: kv_rope_store, plain and official numerics") {
  std::mt19937_64 rng(22);
  const int64_t n = 7, D = 512, n_rot = 64, cap = 20, pos0 = 33;
  const ref::Rope rope(yarn(n_rot));
  DevRope dr(rope);
  for (bool official : {false, true}) {
    CAPTURE(official);
    auto kv = randn(size_t(n * D), rng, 1.5f);
    std::vector<float> ref = kv;
    std::vector<float> ring_ref(size_t(cap * D), 0.0f);
    for (int64_t t = 0; t < n; ++t) {
      float* kt = ref.data() + t * D;
      rope.apply(kt, 1, D, pos0 + t);
      if (official) {
        ref::fp8_kv_round_trip(kt, D - n_rot);
        ref::f16_round_inplace(kt, D);
      }
      std::memcpy(ring_ref.data() + ((pos0 + t) % cap) * D, kt, size_t(D) * 4);
    }
    DevBuf dkv(kv), dring(ring_ref.size() * 4);
    GPU_CHECK(cudaMemset(dring.p, 0, dring.bytes));
    DevPos p(pos0);
    cuda::KvStoreArgs a;
    a.kv = dkv.as<float>();
    a.n = n;
    a.head_dim = D;
    a.raw = dring.as<float>();
    a.raw_cap = cap;
    a.tab = dr.tab;
    a.pos0 = p.ptr();
    a.official = official;
    cuda::kv_rope_store(a, nullptr);
    const auto got = dring.get<float>(ring_ref.size());
    if (official) {
      check_rounded("kv_rope_store official", got, ring_ref);
      // An F16 ring (kv_dtype F16) holds the F32 ring's values bit for bit: the rows are
      // F16-rounded before they are stored.
      DevBuf dkv2(kv), dring16(size_t(cap * D) * 2);
      GPU_CHECK(cudaMemset(dring16.p, 0, dring16.bytes));
      cuda::KvStoreArgs a16 = a;
      a16.kv = dkv2.as<float>();
      a16.raw = nullptr;
      a16.raw16 = dring16.as<uint16_t>();
      cuda::kv_rope_store(a16, nullptr);
      const auto h = dring16.get<uint16_t>(size_t(cap * D));
      std::vector<float> widened(h.size());
      for (size_t i = 0; i < h.size(); ++i) widened[i] = f16_to_f32(h[i]);
      check_same_bits("kv_rope_store into an F16 ring", widened, got);
    } else {
      check_close("kv_rope_store", got, ring_ref, kExact);
      cuda::KvStoreArgs a16 = a;  // plain rows are not F16-rounded: an F16 ring is refused
      a16.raw = nullptr;
      DevBuf dring16(size_t(cap * D) * 2);
      a16.raw16 = dring16.as<uint16_t>();
      CHECK_THROWS_WITH(cuda::kv_rope_store(a16, nullptr), doctest::Contains("official numerics"));
    }
  }
}

namespace {

enum class Kind { swa, hca, csa_sel, csa_all };

void attention_case(Kind kind, int64_t n, int64_t pos0, int64_t D, std::mt19937_64& rng, bool bad_indices = false,
                    int64_t H = 4, bool f16_rows = false) {
  CAPTURE(int(kind));
  CAPTURE(n);
  CAPTURE(pos0);
  CAPTURE(D);
  CAPTURE(H);
  const int64_t W = 128, raw_cap = W + n, topk = 8;
  const int64_t ratio = kind == Kind::swa ? 0 : (kind == Kind::hca ? 16 : 4);
  const int64_t max_rows = ratio ? (pos0 + n + ratio - 1) / ratio + 2 : 1;
  auto q = randn(size_t(n * H * D), rng, 0.3f);
  auto raw = randn(size_t(raw_cap * D), rng);
  auto comp = randn(size_t(max_rows * D), rng);
  if (f16_rows) {  // the rows official numerics stores: F16-rounded
    ref::f16_round_inplace(raw.data(), int64_t(raw.size()));
    ref::f16_round_inplace(comp.data(), int64_t(comp.size()));
  }
  auto sinks = randn(size_t(H), rng);
  std::vector<int32_t> sel(size_t(n * topk), 0), nsel(size_t(n), -1);
  if (kind == Kind::csa_sel) {
    for (int64_t t = 0; t < n; ++t) {
      const int64_t N = (pos0 + t + 1) / ratio;
      std::vector<int32_t> rows(static_cast<size_t>(N));
      for (int64_t i = 0; i < N; ++i) rows[size_t(i)] = int32_t(i);
      std::shuffle(rows.begin(), rows.end(), rng);
      rows.resize(size_t(topk));
      std::sort(rows.begin(), rows.end());
      if (bad_indices) {
        rows[1] = -3;
        rows[5] = 1 << 20;
      }
      std::copy(rows.begin(), rows.end(), sel.begin() + t * topk);
      nsel[size_t(t)] = int32_t(topk);
    }
  }
  const float scale = float(1.0 / std::sqrt(double(D)));
  std::vector<float> ref(q.size());
  for (int64_t t = 0; t < n; ++t) {
    const int64_t p = pos0 + t;
    std::vector<const float*> keys;
    if (ratio) {
      const int64_t N = (p + 1) / ratio;
      if (kind == Kind::csa_sel) {
        for (int64_t i = 0; i < topk; ++i) {
          const int32_t r = sel[size_t(t * topk + i)];
          if (r >= 0 && r < N) keys.push_back(comp.data() + r * D);
        }
      } else {
        for (int64_t i = 0; i < N; ++i) keys.push_back(comp.data() + i * D);
      }
    }
    for (int64_t r = std::max<int64_t>(0, p - W + 1); r <= p; ++r) keys.push_back(raw.data() + (r % raw_cap) * D);
    std::vector<float> scratch(size_t(ref::attention_scratch_floats(int64_t(keys.size()), D)));
    for (int64_t h = 0; h < H; ++h)
      ref::attention_head(q.data() + (t * H + h) * D, keys.data(), int64_t(keys.size()), D, sinks[size_t(h)], scale,
                          ref.data() + (t * H + h) * D, scratch.data());
  }
  DevBuf dq(q), draw(raw), dcomp(comp), dsinks(sinks), dsel(sel), dnsel(nsel), dout(q.size() * 4);
  DevPos p(pos0);
  cuda::AttentionArgs a;
  a.q = dq.as<float>();
  a.out = dout.as<float>();
  a.n = n;
  a.heads = H;
  a.head_dim = D;
  a.raw = draw.as<float>();
  a.raw_cap = raw_cap;
  a.window = W;
  if (ratio) {
    a.comp = dcomp.as<float>();
    a.ratio = ratio;
    a.max_rows = max_rows;
  }
  if (kind == Kind::csa_sel || kind == Kind::csa_all) {
    a.sel = dsel.as<int32_t>();
    a.nsel = dnsel.as<int32_t>();
    a.topk = topk;
  }
  a.sinks = dsinks.as<float>();
  a.scale = scale;
  a.pos0 = p.ptr();
  // Each kernel into poisoned outputs, then again launched with PDL right after the
  // kernel writing q: the same bits.
  using Kernel = void (*)(const cuda::AttentionArgs&, cuda::Launch);
  auto run = [&](Kernel kernel, const char* what) {
    GPU_CHECK(cudaMemset(dout.p, 0xff, dout.bytes));
    kernel(a, nullptr);
    const auto got = dout.get<float>(q.size());
    check_close(what, got, ref, kF32);
    DevBuf dq2(q.size() * 4), dout2(q.size() * 4);
    PdlRun pdl;
    pdl.refill(dq2, dq);
    cuda::AttentionArgs a2 = a;
    a2.q = dq2.as<float>();
    a2.out = dout2.as<float>();
    kernel(a2, pdl.launch());
    check_same_bits(std::string(what) + " with PDL", dout2.get<float>(q.size()), got);
    return got;
  };
  const auto plain = run(&cuda::attention, "attention");
  const auto tc = run(&cuda::attention_prefill_tc, "attention on tensor cores");  // cuda.attention.prefill

  if (!f16_rows) return;
  // The same rows stored as F16 bits (a plan's kv_dtype F16): both kernels read the same
  // values, so the same bits come out.
  auto bits = [](const std::vector<float>& v) {
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = f32_to_f16(v[i]);
    return h;
  };
  DevBuf draw16(bits(raw)), dcomp16(bits(comp));
  cuda::AttentionArgs a16 = a;
  a16.raw = nullptr;
  a16.comp = nullptr;
  a16.raw16 = draw16.as<uint16_t>();
  if (ratio) a16.comp16 = dcomp16.as<uint16_t>();
  for (auto [kernel, want, what] : {std::tuple{Kernel(&cuda::attention), &plain, "attention over F16 rows"},
                                    std::tuple{Kernel(&cuda::attention_prefill_tc), &tc,
                                               "attention on tensor cores over F16 rows"}}) {
    GPU_CHECK(cudaMemset(dout.p, 0xff, dout.bytes));
    kernel(a16, nullptr);
    check_same_bits(what, dout.get<float>(q.size()), *want);
  }
}

}  // namespace

TEST_CASE("gpu ops: attention launchers refuse mixed F32/F16 rows and misaligned rows") {
  const int64_t D = 64, H = 4, n = 2, cap = 130;
  DevBuf dq(size_t(n * H * D) * 4), dout(size_t(n * H * D) * 4), draw(size_t(cap * D) * 4),
      draw16(size_t(cap * D) * 2), dsinks(size_t(H) * 4);
  DevPos p(0);
  cuda::AttentionArgs a;
  a.q = dq.as<float>();
  a.out = dout.as<float>();
  a.n = n;
  a.heads = H;
  a.head_dim = D;
  a.raw = draw.as<float>();
  a.raw_cap = cap;
  a.window = 128;
  a.sinks = dsinks.as<float>();
  a.pos0 = p.ptr();
  for (auto kernel : {&cuda::attention, &cuda::attention_prefill_tc}) {
    cuda::AttentionArgs mixed = a;
    mixed.raw16 = draw16.as<uint16_t>();
    CHECK_THROWS_WITH(kernel(mixed, nullptr), doctest::Contains("all F32 (raw, comp) or all F16"));
    cuda::AttentionArgs none = a;
    none.raw = nullptr;
    CHECK_THROWS_WITH(kernel(none, nullptr), doctest::Contains("all F32 (raw, comp) or all F16"));
  }
  cuda::AttentionArgs odd = a;
  odd.q = a.q + 1;  // 4-byte aligned only: the tensor-core kernel copies 16 bytes at a time
  CHECK_THROWS_WITH(cuda::attention_prefill_tc(odd, nullptr), doctest::Contains("not 16-byte aligned"));
}

TEST_CASE("gpu ops: attention with sinks, decode and prefill, every layer kind") {
  std::mt19937_64 rng(23);
  for (int64_t D : {64, 512})
    for (Kind k : {Kind::swa, Kind::hca, Kind::csa_sel, Kind::csa_all}) {
      attention_case(k, 1, 300, D, rng);  // decode, window full
      attention_case(k, 1, 40, D, rng);   // decode, window not yet full
      attention_case(k, 6, 200, D, rng);  // prefill chunk
    }
  attention_case(Kind::csa_sel, 3, 100, 64, rng, true);  // bad indices are skipped
  // Head counts around the tensor-core kernel's 16-head blocks (a partial last block),
  // DS4 Flash's 64 heads, and a chunk long enough for many key tiles per token.
  attention_case(Kind::hca, 5, 300, 128, rng, false, 20);
  attention_case(Kind::csa_sel, 4, 700, 256, rng, true, 17);
  attention_case(Kind::csa_all, 40, 600, 512, rng, false, 64);
  attention_case(Kind::swa, 33, 0, 512, rng, false, 64);  // the first chunk: windows still filling
  // KV stored as F16 (official numerics' rows), every layer kind, decode and prefill.
  for (Kind k : {Kind::swa, Kind::hca, Kind::csa_sel, Kind::csa_all}) {
    attention_case(k, 1, 300, 512, rng, false, 64, true);
    attention_case(k, 24, 500, 512, rng, k == Kind::csa_sel, 64, true);
    attention_case(k, 5, 90, 64, rng, false, 20, true);
  }
}

namespace {

void compressor_case(int64_t ratio, int64_t dim, bool index_keys, bool official, std::mt19937_64& rng) {
  CAPTURE(ratio);
  CAPTURE(dim);
  CAPTURE(index_keys);
  CAPTURE(official);
  const ref::CompressorShape sh{ratio, dim};
  const int64_t w = sh.width(), total = 6 * ratio + 3, n_rot = 16, max_rows = total / ratio + 1;
  const std::vector<int64_t> chunks{1, 3, 8, 1, 1, 16, 5, 32, 2};
  int64_t max_chunk = 0;
  for (auto c : chunks) max_chunk = std::max(max_chunk, c);
  const ref::Rope rope(yarn(n_rot));
  DevRope dr(rope);
  auto kv = randn(size_t(total * w), rng);
  auto gate = randn(size_t(total * w), rng, 2.0f);
  auto ape = randn(size_t(ratio * w), rng, 0.5f);
  auto norm = randn(size_t(dim), rng, 0.2f, 1.0f);

  // CPU: token by token, as the CPU executor does.
  const int64_t cap_cpu = (sh.overlap() ? 2 : 1) * ratio + 1;
  std::vector<float> rkv(size_t(cap_cpu * w)), rsc(size_t(cap_cpu * w)), rows_ref(size_t(max_rows * dim), 0.0f);
  ref::CompressorRing ring{rkv.data(), rsc.data(), cap_cpu, w};
  for (int64_t p = 0; p < total; ++p) {
    std::memcpy(ring.kv_row(p), kv.data() + p * w, size_t(w) * 4);
    float* s = ring.score_row(p);
    for (int64_t j = 0; j < w; ++j) s[j] = gate[size_t(p * w + j)] + ape[size_t((p % ratio) * w + j)];
    if ((p + 1) % ratio) continue;
    const int64_t win = (p + 1) / ratio - 1;
    float* row = rows_ref.data() + win * dim;
    ref::compressor_emit(ring, sh, win, norm.data(), 1e-6f, rope, row);
    if (official) {
      if (index_keys) {
        ref::indexer_qat_row(row, dim);
      } else {
        ref::fp8_kv_round_trip(row, dim - n_rot);
        ref::f16_round_inplace(row, dim);
      }
    }
  }

  // GPU: in chunks, rows as F32 or (rows16) as F16 bits.
  const int64_t cap = cuda::compressor_ring_min(sh, max_chunk);
  DevBuf dkv(kv), dgate(gate), dape(ape), dnorm(norm), derr(4);
  GPU_CHECK(cudaMemset(derr.p, 0, 4));
  auto run = [&](float* rows, uint16_t* rows16) {
  DevBuf drk(size_t(cap * w) * 4), drs(size_t(cap * w) * 4);
  DevPos p(0);
  int64_t pos = 0;
  for (size_t i = 0; pos < total; ++i) {
    const int64_t m = std::min(chunks[i % chunks.size()], total - pos);
    p.set(pos);
    cuda::CompressorArgs a;
    a.kv = dkv.as<float>() + pos * w;
    a.gate = dgate.as<float>() + pos * w;
    a.ape = dape.as<float>();
    a.ring_kv = drk.as<float>();
    a.ring_score = drs.as<float>();
    a.cap = cap;
    a.rows = rows;
    a.rows16 = rows16;
    a.max_rows = max_rows;
    a.shape = sh;
    a.n = m;
    a.norm = dnorm.as<float>();
    a.tab = dr.tab;
    a.pos0 = p.ptr();
    a.official = official;
    a.index_keys = index_keys;
    a.err = derr.as<uint32_t>();
    cuda::compressor(a, nullptr);
    pos += m;
  }
  };
  DevBuf drows(rows_ref.size() * 4);
  GPU_CHECK(cudaMemset(drows.p, 0, drows.bytes));
  run(drows.as<float>(), nullptr);
  const auto got = drows.get<float>(rows_ref.size());
  if (official) {
    check_rounded("compressor rows official", got, rows_ref);
  } else {
    check_close("compressor rows", got, rows_ref, kF32);
  }
  CHECK(derr.get<uint32_t>(1)[0] == 0);
  DevBuf drows16(rows_ref.size() * 2);
  GPU_CHECK(cudaMemset(drows16.p, 0, drows16.bytes));
  if (official && !index_keys) {  // F16 attention rows (kv_dtype F16): the F32 rows' values, bit for bit
    run(nullptr, drows16.as<uint16_t>());
    const auto h = drows16.get<uint16_t>(rows_ref.size());
    std::vector<float> widened(h.size());
    for (size_t i = 0; i < h.size(); ++i) widened[i] = f16_to_f32(h[i]);
    check_same_bits("compressor rows as F16", widened, got);
  } else {  // F16 rows hold only official attention rows: refused
    CHECK_THROWS_WITH(run(nullptr, drows16.as<uint16_t>()), doctest::Contains("official numerics"));
  }
}

}  // namespace

TEST_CASE("gpu ops: compressor state update and emission over chunked steps") {
  std::mt19937_64 rng(24);
  for (bool official : {false, true}) {
    compressor_case(4, 64, false, official, rng);   // CSA attention rows (overlapping)
    compressor_case(4, 32, true, official, rng);    // CSA indexer keys
    compressor_case(16, 64, false, official, rng);  // HCA
    compressor_case(4, 512, false, official, rng);   // DS4 Flash CSA rows (512-thread emit)
    compressor_case(128, 512, false, official, rng); // DS4 Flash HCA rows
  }
}

TEST_CASE("gpu ops: compressor beyond its rows flags a full context and writes nothing") {
  std::mt19937_64 rng(25);
  const ref::CompressorShape sh{4, 64};
  const int64_t w = sh.width(), n = 8, cap = cuda::compressor_ring_min(sh, n);
  auto kv = randn(size_t(n * w), rng), gate = randn(size_t(n * w), rng), ape = randn(size_t(4 * w), rng),
       norm = randn(64, rng);
  const ref::Rope rope(yarn(16));
  DevRope dr(rope);
  DevBuf dkv(kv), dgate(gate), dape(ape), dnorm(norm), drk(size_t(cap * w) * 4), drs(size_t(cap * w) * 4),
      drows(size_t(1 * 64) * 4), derr(4);
  GPU_CHECK(cudaMemset(derr.p, 0, 4));
  DevPos p(0);
  cuda::CompressorArgs a;
  a.kv = dkv.as<float>();
  a.gate = dgate.as<float>();
  a.ape = dape.as<float>();
  a.ring_kv = drk.as<float>();
  a.ring_score = drs.as<float>();
  a.cap = cap;
  a.rows = drows.as<float>();
  a.max_rows = 1;  // windows 0 fits, window 1 does not
  a.shape = sh;
  a.n = n;
  a.norm = dnorm.as<float>();
  a.tab = dr.tab;
  a.pos0 = p.ptr();
  a.err = derr.as<uint32_t>();
  cuda::compressor(a, nullptr);
  CHECK(derr.get<uint32_t>(1)[0] == cuda::kErrContextFull);
  const auto row = drows.get<float>(64);
  for (float v : row) CHECK(std::isfinite(v));  // window 0 written, nothing past the buffer
}
