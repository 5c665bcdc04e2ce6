// The norm and hyper-connection families on the GPU against their CPU references
// (ops/norm, ops/hc) on random data, outputs poisoned with NaN first. Bounds (rel L2 /
// max abs; NaN never passes):
//   rms_norm, add, hc_post, embed        1e-6 / 1e-5   (same float ops; double sums
//                                                       differ only in order)
//   hc_pre (x_in, post, comb), hc_head   1e-5 / 1e-4   (f32 mix matvec order)
#include <doctest/doctest.h>

#include <utility>

#include "ops/core/half.h"
#include "ops/hc/hc.h"
#include "ops/hc/hc_cuda.h"
#include "ops/norm/norm.h"
#include "ops/norm/norm_cuda.h"
#include "ops/quant/quantize.h"
#include "tests/gpu/ops_util.h"

using namespace fp;
using namespace fp::test;

namespace {

const Bound kExact{1e-6, 1e-5};
const Bound kMix{1e-5, 1e-4};

ref::HcShape shape(int64_t dim) {
  ref::HcShape s;
  s.hc = 4;
  s.dim = dim;
  s.norm_eps = 1e-6f;
  s.hc_eps = 1e-6f;
  s.sinkhorn_iters = 20;
  return s;
}

std::vector<uint8_t> encode(DType t, const std::vector<float>& v) {
  if (t == DType::F32) return f32_bytes(v);
  std::vector<uint8_t> b(size_t(row_bytes(t, int64_t(v.size()))));
  if (t == DType::F16) {
    for (size_t i = 0; i < v.size(); ++i) {
      const uint16_t h = f32_to_f16(v[i]);
      std::memcpy(&b[2 * i], &h, 2);
    }
    return b;
  }
  quantize_row(t, v.data(), b.data(), int64_t(v.size()));
  return b;
}

}  // namespace

TEST_CASE("gpu ops: rms_norm (weighted, unweighted, in place) and add") {
  std::mt19937_64 rng(11);
  for (int64_t dim : {64, 4096, 1000}) {
    const int64_t n = 5;
    auto x = randn(size_t(n * dim), rng, 3.0f);
    auto w = randn(size_t(dim), rng, 0.2f, 1.0f);
    for (bool weighted : {true, false}) {
      std::vector<float> ref(x.size());
      ref::rms_norm(x.data(), weighted ? w.data() : nullptr, ref.data(), n, dim, 1e-6f);
      DevBuf dx(x), dw(w), dy(x.size() * 4);
      cuda::rms_norm(dx.as<float>(), weighted ? dw.as<float>() : nullptr, dy.as<float>(), n, dim, 1e-6f, nullptr);
      const auto plain = dy.get<float>(x.size());
      check_close("rms_norm dim " + std::to_string(dim), plain, ref, kExact);
      {  // Launched with PDL right after the kernel writing x: the same bits.
        DevBuf dx2(x.size() * 4), dy2(x.size() * 4);
        PdlRun pdl;
        pdl.refill(dx2, dx);
        cuda::rms_norm(dx2.as<float>(), weighted ? dw.as<float>() : nullptr, dy2.as<float>(), n, dim, 1e-6f,
                       pdl.launch());
        check_same_bits("rms_norm with PDL", dy2.get<float>(x.size()), plain);
      }
      cuda::rms_norm(dx.as<float>(), weighted ? dw.as<float>() : nullptr, dx.as<float>(), n, dim, 1e-6f, nullptr);
      check_close("rms_norm in place", dx.get<float>(x.size()), ref, kExact);
    }
  }
  auto a = randn(10001, rng), b = randn(10001, rng);
  std::vector<float> ref(a.size());
  for (size_t i = 0; i < a.size(); ++i) ref[i] = a[i] + b[i];
  DevBuf da(a), db(b), dy(a.size() * 4);
  cuda::add(da.as<float>(), db.as<float>(), dy.as<float>(), int64_t(a.size()), nullptr);
  check_close("add", dy.get<float>(a.size()), ref, {0, 0});
}

TEST_CASE("gpu ops: embed from F32, F16 and Q8_0 tables; bad ids flagged, never read outside") {
  std::mt19937_64 rng(12);
  const int64_t vocab = 50, dim = 256, n = 6;
  const auto s = shape(dim);
  auto table = randn(size_t(vocab * dim), rng);
  const std::vector<int32_t> tokens{3, 0, 49, 17, 17, 8};
  for (DType t : {DType::F32, DType::F16, DType::Q8_0}) {
    CAPTURE(dtype_name(t));
    const auto bytes = encode(t, table);
    const ref::Weight hw = host_weight(bytes, t, vocab, dim);
    std::vector<float> e(size_t(n * dim)), ref(size_t(n * s.hc * dim));
    for (int64_t i = 0; i < n; ++i) ref::weight_row_f32(hw, tokens[size_t(i)], e.data() + i * dim);
    ref::hc_embed(e.data(), n, s, ref.data());
    DevBuf dt(bytes), dtok(tokens), dX(ref.size() * 4), derr(4);
    GPU_CHECK(cudaMemset(derr.p, 0, 4));
    cuda::embed(dev_weight(dt, t, vocab, dim), dtok.as<int32_t>(), n, s, dX.as<float>(), derr.as<uint32_t>(), nullptr);
    check_close("embed", dX.get<float>(ref.size()), ref, {0, 0});
    CHECK(derr.get<uint32_t>(1)[0] == 0);
  }
  const std::vector<int32_t> bad{2, 50, -1};
  const auto bytes = encode(DType::F32, table);
  DevBuf dt(bytes), dtok(bad), dX(size_t(3 * s.hc * dim) * 4), derr(4);
  GPU_CHECK(cudaMemset(derr.p, 0, 4));
  cuda::embed(dev_weight(dt, DType::F32, vocab, dim), dtok.as<int32_t>(), 3, s, dX.as<float>(), derr.as<uint32_t>(),
              nullptr);
  CHECK(derr.get<uint32_t>(1)[0] == cuda::kErrTokenRange);
}

TEST_CASE("gpu ops: hc_pre, hc_post and hc_head against the CPU reference") {
  std::mt19937_64 rng(13);
  for (int64_t dim : {64, 1024, 4096}) {  // 4096: DS4 Flash (64 mix slices; 5 tokens span two token tiles)
    for (DType ft : {DType::F32, DType::F16}) {
      CAPTURE(dim);
      CAPTURE(dtype_name(ft));
      const auto s = shape(dim);
      const int64_t n = dim == 4096 ? 5 : 3, hd = s.hc * dim, mix = s.mix();
      auto X = randn(size_t(n * hd), rng);
      auto fnv = randn(size_t(mix * hd), rng, float(1.0 / std::sqrt(double(hd))));
      if (ft == DType::F16)
        for (auto& v : fnv) v = f16_to_f32(f32_to_f16(v));  // representable: same weights on both sides
      auto scale = randn(3, rng, 0.2f, 1.0f);
      auto base = randn(size_t(mix), rng, 0.5f);
      const auto fn_bytes = encode(ft, fnv);
      const ref::Weight hfn = host_weight(fn_bytes, ft, mix, hd);
      std::vector<float> x_in(size_t(n * dim)), post(size_t(n * s.hc)), comb(size_t(n * s.hc * s.hc)),
          scratch(size_t(n * (hd + mix)));
      ref::hc_pre(X.data(), n, hfn, scale.data(), base.data(), s, x_in.data(), post.data(), comb.data(), scratch.data());
      DevBuf dX(X), dfn(fn_bytes), dscale(scale), dbase(base), dxin(x_in.size() * 4), dpost(post.size() * 4),
          dcomb(comb.size() * 4), dscr(scratch.size() * 4);
      cuda::hc_pre(dX.as<float>(), n, dev_weight(dfn, ft, mix, hd), dscale.as<float>(), dbase.as<float>(), s,
                   dxin.as<float>(), dpost.as<float>(), dcomb.as<float>(), dscr.as<float>(), nullptr);
      check_close("hc_pre x_in", dxin.get<float>(x_in.size()), x_in, kMix);
      check_close("hc_pre post", dpost.get<float>(post.size()), post, kMix);
      check_close("hc_pre comb", dcomb.get<float>(comb.size()), comb, kMix);
      {  // Launched with PDL right after the kernel writing X (both of its kernels): the same bits.
        DevBuf dX2(X.size() * 4), dxin2(x_in.size() * 4), dpost2(post.size() * 4), dcomb2(comb.size() * 4),
            dscr2(scratch.size() * 4);
        PdlRun pdl;
        pdl.refill(dX2, dX);
        cuda::hc_pre(dX2.as<float>(), n, dev_weight(dfn, ft, mix, hd), dscale.as<float>(), dbase.as<float>(), s,
                     dxin2.as<float>(), dpost2.as<float>(), dcomb2.as<float>(), dscr2.as<float>(), pdl.launch());
        check_same_bits("hc_pre x_in with PDL", dxin2.get<float>(x_in.size()), dxin.get<float>(x_in.size()));
        check_same_bits("hc_pre post with PDL", dpost2.get<float>(post.size()), dpost.get<float>(post.size()));
        check_same_bits("hc_pre comb with PDL", dcomb2.get<float>(comb.size()), dcomb.get<float>(comb.size()));
      }

      // hc_post from the CPU's post/comb (so only hc_post's own arithmetic is compared).
      auto av = randn(size_t(n * dim), rng);
      std::vector<float> Xo(X.size());
      ref::hc_post(av.data(), X.data(), post.data(), comb.data(), n, s, Xo.data());
      DevBuf da(av), dpost_ref(post), dcomb_ref(comb), dXo(Xo.size() * 4);
      cuda::hc_post(da.as<float>(), dX.as<float>(), dpost_ref.as<float>(), dcomb_ref.as<float>(), n, s,
                    dXo.as<float>(), nullptr);
      check_close("hc_post", dXo.get<float>(Xo.size()), Xo, kExact);

      auto hfnv = randn(size_t(s.hc * hd), rng, float(1.0 / std::sqrt(double(hd))));
      if (ft == DType::F16)
        for (auto& v : hfnv) v = f16_to_f32(f32_to_f16(v));
      const auto hfn_bytes = encode(ft, hfnv);
      auto hbase = randn(size_t(s.hc), rng, 0.5f);
      std::vector<float> zr(size_t(n * dim)), hscr(size_t(n * (hd + s.hc)));
      ref::hc_head(X.data(), n, host_weight(hfn_bytes, ft, s.hc, hd), scale.data(), hbase.data(), s, zr.data(),
                   hscr.data());
      DevBuf dhfn(hfn_bytes), dhbase(hbase), dz(zr.size() * 4), dhscr(hscr.size() * 4);
      cuda::hc_head(dX.as<float>(), n, dev_weight(dhfn, ft, s.hc, hd), dscale.as<float>(), dhbase.as<float>(), s,
                    dz.as<float>(), dhscr.as<float>(), nullptr);
      check_close("hc_head", dz.get<float>(zr.size()), zr, kMix);
    }
  }
}

TEST_CASE("gpu ops: hc_pre over a prefill-sized step equals the CPU and, token for token, a decode-sized step") {
  // Short steps and prefill-sized ones take different mix kernels, and the tail a block per
  // token. A token's outputs must not depend on which other tokens share its step (bit for
  // bit): MTP verification and chunked prefill see the decode step's bits.
  struct Case {
    int64_t dim, n;
    DType ft;
  };
  // DS4 (64 slices of 256); 32 slices of 128 (lanes past a slice's end); 2 slices.
  for (const Case& c : {Case{4096, 70, DType::F16}, Case{1024, 75, DType::F32}, Case{64, 64, DType::F16}}) {
    CAPTURE(c.dim);
    CAPTURE(c.n);
    std::mt19937_64 rng(31 + uint64_t(c.dim));
    const auto s = shape(c.dim);
    const int64_t n = c.n, few = 3, hd = s.hc * s.dim, mix = s.mix();
    auto X = randn(size_t(n * hd), rng);
    auto fnv = randn(size_t(mix * hd), rng, float(1.0 / std::sqrt(double(hd))));
    if (c.ft == DType::F16)
      for (auto& v : fnv) v = f16_to_f32(f32_to_f16(v));
    auto scale = randn(3, rng, 0.2f, 1.0f);
    auto base = randn(size_t(mix), rng, 0.5f);
    const auto fn_bytes = encode(c.ft, fnv);
    std::vector<float> x_in(size_t(n * s.dim)), post(size_t(n * s.hc)), comb(size_t(n * s.hc * s.hc)),
        scratch(size_t(n * (hd + mix)));
    ref::hc_pre(X.data(), n, host_weight(fn_bytes, c.ft, mix, hd), scale.data(), base.data(), s, x_in.data(),
                post.data(), comb.data(), scratch.data());
    DevBuf dX(X), dfn(fn_bytes), dscale(scale), dbase(base);
    // hc_pre over tokens [first, first + m).
    auto run = [&](int64_t first, int64_t m, std::vector<float>& xi, std::vector<float>& po, std::vector<float>& co) {
      DevBuf dxin(size_t(m * s.dim) * 4), dpost(size_t(m * s.hc) * 4), dcomb(size_t(m * s.hc * s.hc) * 4),
          dscr(size_t(m * (hd + mix)) * 4);
      GPU_CHECK(cudaMemset(dxin.p, 0xff, dxin.bytes));
      cuda::hc_pre(dX.as<float>() + first * hd, m, dev_weight(dfn, c.ft, mix, hd), dscale.as<float>(), dbase.as<float>(), s,
                   dxin.as<float>(), dpost.as<float>(), dcomb.as<float>(), dscr.as<float>(), nullptr);
      xi = dxin.get<float>(size_t(m * s.dim));
      po = dpost.get<float>(size_t(m * s.hc));
      co = dcomb.get<float>(size_t(m * s.hc * s.hc));
    };
    std::vector<float> xi, po, co, xf, pf, cf;
    run(0, n, xi, po, co);
    check_close("hc_pre x_in, many tokens", xi, x_in, kMix);
    check_close("hc_pre post, many tokens", po, post, kMix);
    check_close("hc_pre comb, many tokens", co, comb, kMix);
    {  // Launched with PDL right after the kernel writing X: the same bits.
      DevBuf dX2(X.size() * 4), dxin2(xi.size() * 4), dpost2(po.size() * 4), dcomb2(co.size() * 4),
          dscr2(size_t(n * (hd + mix)) * 4);
      PdlRun pdl;
      pdl.refill(dX2, dX);
      cuda::hc_pre(dX2.as<float>(), n, dev_weight(dfn, c.ft, mix, hd), dscale.as<float>(), dbase.as<float>(), s,
                   dxin2.as<float>(), dpost2.as<float>(), dcomb2.as<float>(), dscr2.as<float>(), pdl.launch());
      check_same_bits("hc_pre x_in with PDL, many tokens", dxin2.get<float>(xi.size()), xi);
      check_same_bits("hc_pre post with PDL, many tokens", dpost2.get<float>(po.size()), po);
      check_same_bits("hc_pre comb with PDL, many tokens", dcomb2.get<float>(co.size()), co);
    }
    // The first tile, the last (partial) one, and one token alone (a decode step).
    for (auto [first, m] : {std::pair{int64_t(0), few}, std::pair{n - few, few}, std::pair{n / 2, int64_t(1)}}) {
      CAPTURE(first);
      CAPTURE(m);
      run(first, m, xf, pf, cf);
      auto part = [&](const std::vector<float>& v, int64_t per) {
        return std::vector<float>(v.begin() + first * per, v.begin() + (first + m) * per);
      };
      check_same_bits("hc_pre x_in, the same tokens in both steps", part(xi, s.dim), xf);
      check_same_bits("hc_pre post, the same tokens in both steps", part(po, s.hc), pf);
      check_same_bits("hc_pre comb, the same tokens in both steps", part(co, s.hc * s.hc), cf);
    }
  }
}
