// The indexer, MoE, linear and sampling families on the GPU against their CPU
// references (ops/indexer, ops/moe, ops/linear, runtime/sampling) on random data, outputs
// poisoned first, plus the robustness cases of every selection kernel. Bounds:
//   indexer_topk: the selected rows equal the CPU's (scores in double on both sides);
//     the prepared queries 1e-6 / 1e-5 (plain)
//   top-k / routing / argmax with NaN, inf and ties: exactly k distinct in-range ids,
//     numbers before NaN, ties to the lower id (checked against a sort)
//   router ids equal the CPU's, weights 1e-6 / 1e-6; swiglu 1e-6 / 1e-6
//   linear / grouped / moe with f32 activations 1e-5 / 1e-4; with the q8 activation
//     formats (the quantiser's own error) 2e-2 relative
//   linear_pair: each output bit for bit linear()'s on the same path
#include <doctest/doctest.h>

#include <numeric>
#include <set>

#include "ops/indexer/indexer.h"
#include "ops/indexer/indexer_cuda.h"
#include "ops/linear/linear_cuda.h"
#include "ops/moe/moe.h"
#include "ops/moe/moe_cuda.h"
#include "ops/hc/hc_cuda.h"
#include "ops/numerics/numerics.h"
#include "ops/quant/quant_cuda.h"
#include "ops/quant/quantize.h"
#include "ops/rope/rope.h"
#include "ops/sample/sample_cuda.h"
#include "runtime/sampling/sampler.h"
#include "tests/gpu/ops_util.h"
#include "tests/support/error_of.h"

using namespace fp;
using namespace fp::test;

namespace {

const Bound kExact{1e-6, 1e-5};
const Bound kF32{1e-5, 1e-4};

// The k best of v (NaN lowest, ties to the lower index), ascending indices.
std::vector<int32_t> expected_topk(const std::vector<double>& v, int64_t k) {
  std::vector<int32_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  auto better = [&](int32_t a, int32_t b) {
    const bool na = std::isnan(v[size_t(a)]), nb = std::isnan(v[size_t(b)]);
    if (na != nb) return nb;
    if (!na && v[size_t(a)] != v[size_t(b)]) return v[size_t(a)] > v[size_t(b)];
    return a < b;
  };
  std::stable_sort(idx.begin(), idx.end(), better);
  idx.resize(size_t(k));
  std::sort(idx.begin(), idx.end());
  return idx;
}

std::vector<int32_t> gpu_topk(const std::vector<double>& v, int64_t k, int32_t* nsel_out = nullptr) {
  DevBuf ds(v), dsel(size_t(k) * 4), dn(4);
  cuda::topk_rows(ds.as<double>(), int64_t(v.size()), 1, int64_t(v.size()), k, dsel.as<int32_t>(), dn.as<int32_t>(),
                  nullptr);
  GPU_CHECK(cudaGetLastError());
  const int32_t n = dn.get<int32_t>(1)[0];
  if (nsel_out) *nsel_out = n;
  if (n < 0) return {};
  return dsel.get<int32_t>(size_t(k));
}

}  // namespace

TEST_CASE("gpu ops: top-k selection is robust to NaN, infinities and ties") {
  std::mt19937_64 rng(31);
  const double nan = std::nan(""), inf = INFINITY;
  std::vector<std::pair<std::string, std::vector<double>>> cases;
  cases.push_back({"all equal", std::vector<double>(1000, 0.5)});
  cases.push_back({"all NaN", std::vector<double>(700, nan)});
  {
    std::vector<double> v(900);
    for (auto& x : v) x = double(int(rng() % 7));  // many ties
    v[13] = nan, v[500] = inf, v[899] = -inf, v[1] = -0.0, v[2] = 0.0, v[77] = inf;
    cases.push_back({"ties, NaN, inf", v});
  }
  {
    std::normal_distribution<double> nd;
    std::vector<double> v(20000);
    for (auto& x : v) x = nd(rng);
    for (int i = 0; i < 200; ++i) v[rng() % v.size()] = nan;
    cases.push_back({"random with NaN", v});
  }
  {
    std::vector<double> v(600);
    for (auto& x : v) x = -double(rng() % 1000) * 1e-300;  // negatives, subnormal-ish scale
    cases.push_back({"tiny negatives", v});
  }
  for (const auto& [name, v] : cases) {
    for (int64_t k : {int64_t(1), int64_t(8), int64_t(512), int64_t(v.size()) - 1}) {
      CAPTURE(name);
      CAPTURE(k);
      const auto got = gpu_topk(v, k);
      REQUIRE(int64_t(got.size()) == k);
      std::set<int32_t> distinct(got.begin(), got.end());
      CHECK(int64_t(distinct.size()) == k);
      for (int32_t i : got) CHECK((i >= 0 && i < int32_t(v.size())));
      CHECK(std::is_sorted(got.begin(), got.end()));
      CHECK(got == expected_topk(v, k));
    }
  }
  // At most k visible rows: nothing to choose.
  int32_t n = 0;
  gpu_topk(std::vector<double>(8, 1.0), 8, &n);
  CHECK(n == -1);
}

namespace {

// One indexer_topk configuration against the CPU: heads x dim of each query, top-k, the
// step's n tokens at positions pos0.. for each pos0 (some at N <= topk, some above).
void indexer_case(int64_t IH, int64_t ID, int64_t topk, int64_t n, std::initializer_list<int64_t> positions,
                  std::mt19937_64& rng) {
  CAPTURE(IH);
  CAPTURE(ID);
  const int64_t ratio = 4, n_rot = 16;
  ref::RopeParams rp;
  rp.n_rot = n_rot;
  rp.base = 160000;
  rp.yarn = true;
  rp.factor = 16;
  rp.orig_ctx = 65536;
  const ref::Rope rope(rp);
  DevBuf dtab(rope.inv_freq());
  for (bool official : {false, true})
    for (int64_t pos0 : positions) {
      CAPTURE(official);
      CAPTURE(pos0);
      const int64_t max_rows = (pos0 + n) / ratio + 3;
      auto keys = randn(size_t(max_rows * ID), rng);
      auto q = randn(size_t(n * IH * ID), rng);
      auto w = randn(size_t(n * IH), rng);
      std::vector<float> qr = q, wr = w;
      const float wscale = float(1.0 / std::sqrt(double(ID) * double(IH)));
      std::vector<std::vector<int32_t>> want(static_cast<size_t>(n));
      for (int64_t t = 0; t < n; ++t) {
        float* qt = qr.data() + t * IH * ID;
        rope.apply(qt, IH, ID, pos0 + t);
        if (official)
          for (int64_t h = 0; h < IH; ++h) ref::indexer_qat_row(qt + h * ID, ID);
        for (int64_t h = 0; h < IH; ++h) wr[size_t(t * IH + h)] *= wscale;
        const int64_t N = (pos0 + t + 1) / ratio;
        if (N <= topk) continue;
        std::vector<double> sc(static_cast<size_t>(N));
        ref::indexer_scores(qt, wr.data() + t * IH, IH, ID, keys.data(), N, sc.data());
        want[size_t(t)].resize(size_t(topk));
        ref::topk_rows(sc.data(), N, topk, want[size_t(t)].data());
      }
      DevBuf dq(q), dw(w), dkeys(keys), dscores(size_t(n * max_rows) * 8), dsel(size_t(n * topk) * 4), dnsel(size_t(n) * 4);
      DevPos p(pos0);
      cuda::IndexerArgs a;
      a.q = dq.as<float>();
      a.w = dw.as<float>();
      a.n = n;
      a.heads = IH;
      a.dim = ID;
      a.keys = dkeys.as<float>();
      a.max_rows = max_rows;
      a.ratio = ratio;
      a.topk = topk;
      a.tab = {dtab.as<double>(), n_rot};
      a.pos0 = p.ptr();
      a.official = official;
      a.scores = dscores.as<double>();
      a.sel = dsel.as<int32_t>();
      a.nsel = dnsel.as<int32_t>();
      cuda::indexer_topk(a, nullptr);
      if (!official) check_close("indexer q", dq.get<float>(q.size()), qr, kExact);
      check_close("indexer w", dw.get<float>(w.size()), wr, kExact);
      const auto sel = dsel.get<int32_t>(size_t(n * topk));
      const auto nsel = dnsel.get<int32_t>(size_t(n));
      for (int64_t t = 0; t < n; ++t) {
        CAPTURE(t);
        if (want[size_t(t)].empty()) {
          CHECK(nsel[size_t(t)] == -1);
          continue;
        }
        CHECK(nsel[size_t(t)] == topk);
        CHECK(std::vector<int32_t>(sel.begin() + t * topk, sel.begin() + (t + 1) * topk) == want[size_t(t)]);
      }
    }
}

}  // namespace

TEST_CASE("gpu ops: indexer_topk matches the CPU indexer, plain and official") {
  std::mt19937_64 rng(32);
  indexer_case(8, 32, 16, 5, {30, 61, 900}, rng);
  // DS4 Flash's indexer: 64 heads of 128 (two heads per lane), top-512 of up to ~1k rows.
  indexer_case(64, 128, 512, 2, {2047, 3000, 4090}, rng);
}

TEST_CASE("gpu ops: router top-k and hash routing match the CPU; robust ids on any scores") {
  std::mt19937_64 rng(33);
  const int64_t NE = 256, K = 6, n = 7, vocab = 40;
  auto logits = randn(size_t(n * NE), rng, 3.0f);
  auto bias = randn(size_t(NE), rng, 0.1f);
  std::vector<int32_t> tokens{1, 5, 39, 0, 22, 5, 17};
  std::vector<int32_t> tid2eid(size_t(vocab * K));
  for (auto& e : tid2eid) e = int32_t(rng() % NE);
  for (bool hash : {false, true}) {
    CAPTURE(hash);
    std::vector<float> sc = logits;
    ref::router_scores(sc.data(), n, NE);
    std::vector<int32_t> ids(static_cast<size_t>(n * K));
    std::vector<float> wts(static_cast<size_t>(n * K));
    if (hash) {
      ref::route_hash(tid2eid.data(), vocab, tokens.data(), n, NE, K, ids.data());
    } else {
      ref::route_topk(sc.data(), bias.data(), n, NE, K, ids.data());
    }
    ref::route_weights(sc.data(), ids.data(), n, NE, K, true, 1.5f, wts.data());
    DevBuf dl(logits), db(bias), dt(tokens), dmap(tid2eid), dids(ids.size() * 4), dw(wts.size() * 4), derr(4);
    GPU_CHECK(cudaMemset(derr.p, 0, 4));
    cuda::RouterArgs a;
    a.logits = dl.as<float>();
    a.n = n;
    a.n_expert = NE;
    a.k = K;
    if (hash) {
      a.tid2eid = dmap.as<int32_t>();
      a.n_vocab = vocab;
      a.tokens = dt.as<int32_t>();
    } else {
      a.bias = db.as<float>();
    }
    a.scale = 1.5f;
    a.ids = dids.as<int32_t>();
    a.weights = dw.as<float>();
    a.err = derr.as<uint32_t>();
    cuda::router(a, nullptr);
    CHECK(dids.get<int32_t>(ids.size()) == ids);
    check_close("router weights", dw.get<float>(wts.size()), wts, {1e-6, 1e-6});
    check_close("router scores", dl.get<float>(sc.size()), sc, {1e-6, 1e-6});
    CHECK(derr.get<uint32_t>(1)[0] == 0);
    {  // Launched with PDL right after the kernel writing the logits: the same bits.
      DevBuf dl0(logits), dl2(logits.size() * 4), dids2(ids.size() * 4), dw2(wts.size() * 4);
      PdlRun pdl;
      pdl.refill(dl2, dl0);
      cuda::RouterArgs a2 = a;
      a2.logits = dl2.as<float>();
      a2.ids = dids2.as<int32_t>();
      a2.weights = dw2.as<float>();
      cuda::router(a2, pdl.launch());
      check_same_bits("router ids with PDL", dids2.get<int32_t>(ids.size()), dids.get<int32_t>(ids.size()));
      check_same_bits("router weights with PDL", dw2.get<float>(wts.size()), dw.get<float>(wts.size()));
      check_same_bits("router scores with PDL", dl2.get<float>(sc.size()), dl.get<float>(sc.size()));
      CHECK(derr.get<uint32_t>(1)[0] == 0);
    }
  }

  // Robustness: NaN, infinities and ties in the logits; bad tid2eid entries and tokens.
  std::vector<float> bad(static_cast<size_t>(4 * NE));
  for (int64_t e = 0; e < NE; ++e) {
    bad[size_t(e)] = std::nanf("");                                     // all NaN
    bad[size_t(NE + e)] = 1.0f;                                         // all tied
    bad[size_t(2 * NE + e)] = e % 3 == 0 ? INFINITY : std::nanf("");    // inf and NaN
    bad[size_t(3 * NE + e)] = e % 2 ? -INFINITY : float(e % 5);         // -inf and ties
  }
  DevBuf dl(bad), dids(size_t(4 * K) * 4), dw(size_t(4 * K) * 4);
  cuda::RouterArgs a;
  a.logits = dl.as<float>();
  a.n = 4;
  a.n_expert = NE;
  a.k = K;
  a.ids = dids.as<int32_t>();
  a.weights = dw.as<float>();
  cuda::router(a, nullptr);
  const auto got = dids.get<int32_t>(size_t(4 * K));
  for (int64_t t = 0; t < 4; ++t) {
    std::set<int32_t> s(got.begin() + t * K, got.begin() + (t + 1) * K);
    CHECK(int64_t(s.size()) == K);
    for (int32_t e : s) CHECK((e >= 0 && e < NE));
  }
  CHECK(std::vector<int32_t>(got.begin(), got.begin() + K) == std::vector<int32_t>{0, 1, 2, 3, 4, 5});
  CHECK(std::vector<int32_t>(got.begin() + K, got.begin() + 2 * K) == std::vector<int32_t>{0, 1, 2, 3, 4, 5});
  CHECK(std::vector<int32_t>(got.begin() + 2 * K, got.begin() + 3 * K) == std::vector<int32_t>{0, 3, 6, 9, 12, 15});
  CHECK(std::vector<int32_t>(got.begin() + 3 * K, got.begin() + 4 * K) == std::vector<int32_t>{4, 14, 24, 34, 44, 54});

  std::vector<int32_t> bad_map(size_t(vocab * K), 1000);
  bad_map[0] = -5;
  const std::vector<int32_t> bad_tokens{0, 99};
  DevBuf dl2(logits), dmap(bad_map), dt(bad_tokens), dids2(size_t(2 * K) * 4), dw2(size_t(2 * K) * 4), derr(4);
  GPU_CHECK(cudaMemset(derr.p, 0, 4));
  cuda::RouterArgs h;
  h.logits = dl2.as<float>();
  h.n = 2;
  h.n_expert = NE;
  h.k = K;
  h.tid2eid = dmap.as<int32_t>();
  h.n_vocab = vocab;
  h.tokens = dt.as<int32_t>();
  h.ids = dids2.as<int32_t>();
  h.weights = dw2.as<float>();
  h.err = derr.as<uint32_t>();
  cuda::router(h, nullptr);
  for (int32_t e : dids2.get<int32_t>(size_t(2 * K))) CHECK((e >= 0 && e < NE));
  CHECK(derr.get<uint32_t>(1)[0] == cuda::kErrTokenRange);
}

TEST_CASE("gpu ops: swiglu with clamps keeps NaN like the CPU") {
  std::mt19937_64 rng(34);
  auto g = randn(5000, rng, 8.0f), u = randn(5000, rng, 8.0f);
  g[7] = std::nanf("");
  for (float limit : {0.0f, 7.0f}) {
    std::vector<float> ref(g.size());
    ref::swiglu(g.data(), u.data(), int64_t(g.size()), limit, ref.data());
    DevBuf dg(g), du(u), dy(g.size() * 4);
    cuda::swiglu(dg.as<float>(), du.as<float>(), int64_t(g.size()), limit, dy.as<float>(), nullptr);
    auto got = dy.get<float>(g.size());
    CHECK(std::isnan(got[7]));
    got[7] = ref[7] = 0;
    check_close("swiglu", got, ref, {1e-6, 1e-5});
  }
}

namespace {

std::vector<uint8_t> weights_of(DType t, const std::vector<float>& v) {
  if (t == DType::F32) return f32_bytes(v);
  std::vector<uint8_t> b(size_t(row_bytes(t, int64_t(v.size()))));
  quantize_row(t, v.data(), b.data(), int64_t(v.size()));
  return b;
}

cuda::LinearWorkspace workspace(DevBuf& qact, DevBuf& iota, int64_t groups, int64_t iota_n, bool exact) {
  cuda::LinearWorkspace ws;
  ws.qact = qact.p;
  ws.qact_bytes = int64_t(qact.bytes);
  ws.iota = iota.as<int32_t>();
  ws.iota_n = iota_n;
  ws.iota_groups = groups;
  ws.exact = exact;
  return ws;
}

}  // namespace

TEST_CASE("gpu ops: linear, grouped and expert products against ref::matmul") {
  std::mt19937_64 rng(35);
  const int64_t rows = 96, cols = 512, groups = 4;
  for (DType t : {DType::F32, DType::F16, DType::Q8_0}) {
    for (bool exact : {false, true}) {
      for (int64_t n : {1, 5}) {
        CAPTURE(dtype_name(t));
        CAPTURE(exact);
        CAPTURE(n);
        const Bound b = exact || t == DType::F32 || t == DType::F16 ? kF32 : Bound{2e-2, 1.0};
        auto wv = randn(size_t(rows * cols), rng, 0.05f);
        const auto wb = weights_of(t, wv);
        auto x = randn(size_t(n * groups * cols), rng);
        std::vector<int32_t> iota(static_cast<size_t>(n * groups));
        for (size_t i = 0; i < iota.size(); ++i) iota[i] = int32_t(i % groups);
        DevBuf dw(wb), dx(x), dq(size_t(n * groups * cols * 2 + 4096)), diota(iota);
        const auto ws = workspace(dq, diota, groups, int64_t(iota.size()), exact);
        const ref::Weight hw = host_weight(wb, t, rows, cols), w = dev_weight(dw, t, rows, cols);

        std::vector<float> ref(static_cast<size_t>(n * rows));
        ref::matmul(hw, x.data(), n, ref.data());
        DevBuf dy(ref.size() * 4);
        cuda::linear(w, dx.as<float>(), n, dy.as<float>(), ws, nullptr);
        check_close("linear", dy.get<float>(ref.size()), ref, b);

        // grouped: W rows split into groups, group g reads x[t][g*cols ..).
        const ref::Weight hg = host_weight(wb, t, rows, cols);
        std::vector<float> gref(static_cast<size_t>(n * rows));
        ref::grouped_matmul(hg, groups, x.data(), n, gref.data());
        DevBuf dg(gref.size() * 4);
        cuda::grouped_linear(w, groups, dx.as<float>(), n, dg.as<float>(), ws, nullptr);
        check_close("grouped_linear", dg.get<float>(gref.size()), gref, b);
      }
    }
  }
}

// A plan's paired matmul node (the shared expert's gate and up: Q8_0 [2048][4096]; a
// compressor's kv and gate: F16 [1024][4096]) runs linear_pair: one launch on the matvec
// paths, two GEMMs on the GEMM path. Each output must be bit for bit what linear() writes
// for that weight alone on the same path, whatever the token count.
TEST_CASE("gpu ops: linear_pair is two linear calls, bit for bit (Q8_0, F16; matvec, xf32, GEMM)") {
  std::mt19937_64 rng(38);
  struct Shape {
    DType t;
    int64_t rows, cols;
  };
  for (const Shape sh : {Shape{DType::Q8_0, 2048, 4096}, Shape{DType::F16, 1024, 4096}, Shape{DType::Q8_0, 96, 512},
                         Shape{DType::F16, 96, 512}}) {
    for (int64_t n : {1, 3, 40}) {
      for (cuda::LinearPath path : {cuda::LinearPath::automatic, cuda::LinearPath::matvec,
                                    cuda::LinearPath::matvec_xf32, cuda::LinearPath::gemm}) {
        CAPTURE(dtype_name(sh.t));
        CAPTURE(sh.rows);
        CAPTURE(n);
        CAPTURE(int(path));
        const auto ab = weights_of(sh.t, randn(size_t(sh.rows * sh.cols), rng, 0.05f));
        const auto bb = weights_of(sh.t, randn(size_t(sh.rows * sh.cols), rng, 0.05f));
        const auto x = randn(size_t(n * sh.cols), rng);
        DevBuf da(ab), db(bb), dx(x), dq(size_t(n * sh.cols * 2 + 4096)), diota(size_t(4));
        DevBuf gws(size_t(cuda::linear_gemm_bytes(sh.cols, n, 4096)));
        cuda::CublasGemm gemm(nullptr);
        cuda::LinearWorkspace ws = workspace(dq, diota, 1, 1, false);
        ws.gemm = &gemm;  // automatic: the GEMM from gemm_min_tokens (32) tokens on
        ws.gemm_ws = gws.p;
        ws.gemm_ws_bytes = int64_t(gws.bytes);
        const ref::Weight a = dev_weight(da, sh.t, sh.rows, sh.cols, 1, "test.gate"),
                          b = dev_weight(db, sh.t, sh.rows, sh.cols, 1, "test.up");
        const size_t out = size_t(n * sh.rows);
        DevBuf ya(out * 4), yb(out * 4), pa(out * 4), pb(out * 4);
        cuda::linear(a, dx.as<float>(), n, ya.as<float>(), ws, nullptr, path);
        cuda::linear(b, dx.as<float>(), n, yb.as<float>(), ws, nullptr, path);
        cuda::linear_pair(a, b, dx.as<float>(), n, pa.as<float>(), pb.as<float>(), ws, nullptr, path);
        GPU_CHECK(cudaGetLastError());
        const auto single_a = ya.get<float>(out), single_b = yb.get<float>(out);
        const auto pair_a = pa.get<float>(out), pair_b = pb.get<float>(out);
        // Poisoned outputs (0xff: NaN) never compare equal bytewise to a finite product.
        for (float v : single_a) REQUIRE(std::isfinite(v));
        CHECK(std::memcmp(pair_a.data(), single_a.data(), out * 4) == 0);
        CHECK(std::memcmp(pair_b.data(), single_b.data(), out * 4) == 0);
        CHECK(std::memcmp(pair_a.data(), pair_b.data(), out * 4) != 0);  // two weights, two outputs
      }
    }
  }
  // Another type or shape does not share a launch.
  const auto qb = weights_of(DType::Q8_0, randn(96 * 512, rng, 0.05f));
  const auto fb = weights_of(DType::F16, randn(96 * 512, rng, 0.05f));
  DevBuf dq8(qb), df16(fb), dx(randn(512, rng)), dy(96 * 4), dy2(96 * 4), dqa(4096), diota(size_t(4));
  const cuda::LinearWorkspace ws = workspace(dqa, diota, 1, 1, false);
  const std::string e = error_of([&] {
    cuda::linear_pair(dev_weight(dq8, DType::Q8_0, 96, 512, 1, "test.gate"), dev_weight(df16, DType::F16, 96, 512, 1, "test.up"),
                      dx.as<float>(), 1, dy.as<float>(), dy2.as<float>(), ws, nullptr);
  });
  CHECK_MESSAGE(e.find("test.up: F16 [1][96][512], expected test.gate's Q8_0") != std::string::npos, e);
}

TEST_CASE("gpu ops: moe (routed experts) against ref::moe_experts, decode and prefill") {
  std::mt19937_64 rng(36);
  const int64_t NE = 8, ff = 256, dim = 512, K = 3;
  for (DType t : {DType::F32, DType::Q8_0}) {
    for (bool exact : {false, true}) {
      for (int64_t n : {1, 4}) {
        CAPTURE(dtype_name(t));
        CAPTURE(exact);
        CAPTURE(n);
        const Bound b = exact || t == DType::F32 ? kF32 : Bound{2e-2, 1.0};
        const auto gb = weights_of(t, randn(size_t(NE * ff * dim), rng, 0.05f));
        const auto ub = weights_of(t, randn(size_t(NE * ff * dim), rng, 0.05f));
        const auto db = weights_of(t, randn(size_t(NE * dim * ff), rng, 0.05f));
        auto u = randn(size_t(n * dim), rng);
        std::vector<int32_t> ids(static_cast<size_t>(n * K));
        for (int64_t tk = 0; tk < n; ++tk)
          for (int64_t i = 0; i < K; ++i) ids[size_t(tk * K + i)] = int32_t((tk * 3 + i * 5) % NE);
        auto w = randn(size_t(n * K), rng, 0.3f, 0.5f);
        std::vector<float> ref(static_cast<size_t>(n * dim));
        ref::moe_experts(u.data(), n, ids.data(), w.data(), K, host_weight(gb, t, ff, dim, NE),
                         host_weight(ub, t, ff, dim, NE), host_weight(db, t, dim, ff, NE), 7.0f, ref.data());
        DevBuf dgb(gb), dub(ub), ddb(db), du(u), dids(ids), dwt(w), dout(ref.size() * 4),
            dwork(size_t(cuda::moe_work_floats(n, K, dim, ff)) * 4), dq(size_t(n * K * ff * 2 + 4096)), diota(size_t(4));
        const auto ws = workspace(dq, diota, 1, 1, exact);
        cuda::MoeArgs m;
        m.u = du.as<float>();
        m.n = n;
        m.k = K;
        m.ids = dids.as<int32_t>();
        m.weights = dwt.as<float>();
        m.gate = dev_weight(dgb, t, ff, dim, NE);
        m.up = dev_weight(dub, t, ff, dim, NE);
        m.down = dev_weight(ddb, t, dim, ff, NE);
        m.limit = 7.0f;
        m.out = dout.as<float>();
        m.work = dwork.as<float>();
        cuda::moe(m, ws, nullptr);
        const auto plain = dout.get<float>(ref.size());
        check_close("moe", plain, ref, b);
        {  // Every launch of the node (gather, quantisers, expert matvecs, swiglu, combine)
           // with PDL, right after the kernel writing u: the same bits.
          DevBuf du2(u.size() * 4), dout2(ref.size() * 4);
          PdlRun pdl;
          pdl.refill(du2, du);
          cuda::MoeArgs m2 = m;
          m2.u = du2.as<float>();
          m2.out = dout2.as<float>();
          cuda::moe(m2, ws, pdl.launch());
          check_same_bits("moe with PDL", dout2.get<float>(ref.size()), plain);
        }
      }
    }
  }
}

TEST_CASE("gpu ops: argmax on the device, ties to the lower id, NaN never wins") {
  std::mt19937_64 rng(37);
  const int64_t V = 129280, n = 3;
  auto logits = randn(size_t(n * V), rng, 4.0f);
  logits[size_t(V + 5)] = 100.0f;
  logits[size_t(V + 90000)] = 100.0f;  // tie: 5 wins
  for (int64_t v = 0; v < V; v += 3) logits[size_t(2 * V + v)] = std::nanf("");
  logits[size_t(2 * V)] = std::nanf("");
  std::vector<int32_t> want(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) {
    int64_t best = -1;
    for (int64_t v = 0; v < V; ++v) {
      const float x = logits[size_t(t * V + v)];
      if (std::isnan(x)) continue;
      if (best < 0 || x > logits[size_t(t * V + best)]) best = v;
    }
    want[size_t(t)] = int32_t(best);
  }
  CHECK(want[0] == argmax_token(std::span<const float>(logits.data(), size_t(V))));
  DevBuf dl(logits), dout(size_t(n) * 4);
  cuda::argmax_rows(dl.as<float>(), n, V, dout.as<int32_t>(), nullptr);
  CHECK(dout.get<int32_t>(size_t(n)) == want);
  CHECK(want[1] == 5);
}

// attn_output_a in a prefill bucket the plan gives cuda.grouped_gemm.dequant_cublas_f16:
// one GEMM per group over that group's columns of x, into its rows of y. Each group's
// output must be bit for bit the dense GEMM of that group's rows on a compacted copy of its
// columns (the same f16 rounding and cuBLAS call), and close to ref::grouped_matmul.
TEST_CASE("gpu ops: grouped_linear on the GEMM path is one dense GEMM per group") {
  std::mt19937_64 rng(39);
  const int64_t groups = 4, rg = 96, cols = 512;  // DS4 Flash: 8 groups of 1024 x 4096
  for (DType t : {DType::Q8_0, DType::F16}) {
    for (int64_t n : {3, 40}) {
      CAPTURE(dtype_name(t));
      CAPTURE(n);
      const auto wb = weights_of(t, randn(size_t(groups * rg * cols), rng, 0.05f));
      const auto x = randn(size_t(n * groups * cols), rng);
      std::vector<int32_t> iota(size_t(n * groups));
      for (size_t i = 0; i < iota.size(); ++i) iota[i] = int32_t(i % groups);
      DevBuf dw(wb), dx(x), dq(size_t(n * groups * cols * 2 + 4096)), diota(iota);
      DevBuf gws(size_t(cuda::linear_gemm_bytes(cols, n, 4096)));
      cuda::CublasGemm gemm(nullptr);
      cuda::LinearWorkspace ws = workspace(dq, diota, groups, int64_t(iota.size()), false);
      ws.gemm = &gemm;
      ws.gemm_ws = gws.p;
      ws.gemm_ws_bytes = int64_t(gws.bytes);
      const ref::Weight w = dev_weight(dw, t, groups * rg, cols);
      const size_t out = size_t(n * groups * rg);
      DevBuf dy(out * 4);
      cuda::grouped_linear(w, groups, dx.as<float>(), n, dy.as<float>(), ws, nullptr, cuda::LinearPath::gemm);
      GPU_CHECK(cudaGetLastError());
      const auto got = dy.get<float>(out);
      std::vector<float> ref(out);
      ref::grouped_matmul(host_weight(wb, t, groups * rg, cols), groups, x.data(), n, ref.data());
      check_close("grouped_linear gemm", got, ref, Bound{2e-2, 1.0});
      const int64_t group_bytes = int64_t(wb.size()) / groups;
      for (int64_t g = 0; g < groups; ++g) {
        CAPTURE(g);
        std::vector<float> xg(size_t(n * cols));
        for (int64_t i = 0; i < n; ++i)
          std::copy_n(x.begin() + (i * groups + g) * cols, cols, xg.begin() + i * cols);
        DevBuf dxg(xg), dyg(size_t(n * rg) * 4);
        ref::Weight wg = dev_weight(dw, t, rg, cols);
        wg.data = static_cast<const uint8_t*>(wg.data) + g * group_bytes;
        cuda::linear(wg, dxg.as<float>(), n, dyg.as<float>(), ws, nullptr, cuda::LinearPath::gemm);
        const auto one = dyg.get<float>(size_t(n * rg));
        for (int64_t i = 0; i < n; ++i)
          CHECK(std::memcmp(got.data() + (i * groups + g) * rg, one.data() + i * rg, size_t(rg) * 4) == 0);
      }
    }
  }
  // A GEMM path without a GEMM workspace is refused, naming the weight.
  const auto wb = weights_of(DType::Q8_0, randn(size_t(groups * rg * cols), rng, 0.05f));
  DevBuf dw(wb), dx(randn(size_t(2 * groups * cols), rng)), dy(size_t(2 * groups * rg) * 4), dq(65536), diota(size_t(64));
  const cuda::LinearWorkspace ws = workspace(dq, diota, groups, 8, false);
  const std::string e = error_of([&] {
    cuda::grouped_linear(dev_weight(dw, DType::Q8_0, groups * rg, cols, 1, "test.attn_output_a"), groups,
                         dx.as<float>(), 2, dy.as<float>(), ws, nullptr, cuda::LinearPath::gemm);
  });
  CHECK(e.find("test.attn_output_a") != std::string::npos);
  CHECK(e.find("without a GEMM workspace") != std::string::npos);
}
