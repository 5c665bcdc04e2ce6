// `flashplan bench-kernels [--csv FILE] [--quick]`: microbenchmark of the decode matvecs
// (and the prefill GEMM baseline) on this GPU, at DS4 Flash sizes, against the copy
// ceiling measured in the same run. Bytes counted per call: the weight bytes the call
// must read (the selected experts only, for expert-indexed calls) + activations + outputs.
//
// Each case replays a CUDA graph of many launches that rotate over enough weight copies
// (or expert selections) to keep the working set far above L2, so the numbers are HBM
// numbers; time per call = median replay time / launches.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "tools/build_commit.h"
#include "ops/core/error.h"
#include "ops/hc/hc_cuda.h"
#include "ops/linear/linear_cuda.h"
#include "ops/moe/moe_cuda.h"
#include "ops/quant/quant_cuda.h"
#include "runtime/cuda/bandwidth.h"
#include "tools/command.h"
#include "tools/cuda_bench.h"

namespace fp::cli::bench_kernels {
namespace {

using cuda_bench::Buf;
using cuda_bench::ck;
using cuda_bench::time_calls;

struct Case {
  std::string name;  // what the shape is in DS4
  DType type;
  int64_t rows, cols;
  int64_t experts = 0;  // > 0: expert-indexed over this many experts
  int32_t slots = 1;    // selected experts per call
  bool per_slot_x = false;
  bool xf32 = false;
  bool paired = false;  // a second tensor in the same launch (an expert's gate and up)
  bool overlap = false;  // MatvecArgs::overlap_prev: each launch may start during the previous one
};

struct Row {
  std::string kernel, name;
  DType type;
  int64_t rows, cols, experts, slots;
  double bytes, us, gbps;
};

Row bench_matvec(const Case& c, cudaStream_t s, bool quick) {
  const int64_t rb = row_bytes(c.type, c.cols);
  const int64_t mats = c.experts > 0 ? c.experts : 1;
  const int64_t tensor_bytes = mats * c.rows * rb;
  const int64_t read_bytes = (c.experts > 0 ? c.slots : 1) * c.rows * rb * (c.paired ? 2 : 1);
  // Dense: enough copies that the rotation spans >= 512 MiB (L2 is 50 MB on an H100).
  const int64_t copies = c.experts > 0 ? 1 : std::clamp<int64_t>((512ll << 20) / tensor_bytes + 1, 2, 64);
  const size_t stride = size_t((tensor_bytes + 255) / 256 * 256);
  const int64_t tensors = copies * (c.paired ? 2 : 1);
  Buf w(stride * size_t(tensors));
  for (int64_t k = 0; k < tensors; ++k)
    cuda::fill_random(c.type, static_cast<uint8_t*>(w.p) + k * stride, mats * c.rows * c.cols, {uint64_t(k + 1)}, s);

  cuda::MatvecArgs a;
  a.type = c.type;
  a.rows = c.rows;
  a.cols = c.cols;
  a.xf32 = c.xf32;
  a.overlap_prev = c.overlap;
  a.n_slots = c.slots;
  a.x_stride = c.per_slot_x ? c.cols : 0;
  const cuda::ActFormat fmt = cuda::matvec_args_act_format(a);
  const int64_t nx = (c.per_slot_x ? c.slots : 1) * c.cols;
  Buf xf(size_t(nx) * 4), xq(size_t(cuda::act_bytes(fmt, nx))), y(size_t(c.slots) * size_t(c.rows) * 4),
      y2(size_t(c.slots) * size_t(c.rows) * 4);
  cuda::fill_random(DType::F32, xf.p, nx, {99, 1.0f}, s);
  cuda::quantize_activations(fmt, static_cast<const float*>(xf.p), nx, xq.p, s);

  const int launches = quick ? 20 : 100;
  // Expert selections: distinct random ids per call, one set per launch.
  std::vector<int32_t> ids;
  std::mt19937 rng(7);
  if (c.experts > 0) {
    std::vector<int32_t> all(size_t(c.experts));
    for (int64_t e = 0; e < c.experts; ++e) all[size_t(e)] = int32_t(e);
    for (int l = 0; l < launches; ++l) {
      std::shuffle(all.begin(), all.end(), rng);
      ids.insert(ids.end(), all.begin(), all.begin() + c.slots);
    }
  }
  Buf dids(ids.size() * 4);
  if (!ids.empty()) ck(cudaMemcpy(dids.p, ids.data(), ids.size() * 4, cudaMemcpyHostToDevice), "ids");
  ck(cudaStreamSynchronize(s), "bench set-up");

  a.x = xq.p;
  a.y = static_cast<float*>(y.p);
  if (c.experts > 0) a.n_experts = int32_t(c.experts);
  const double us = time_calls(s, launches, quick ? 3 : 7, [&](int i) {
    cuda::MatvecArgs b = a;
    b.w = static_cast<uint8_t*>(w.p) + (i % copies) * stride;
    if (c.paired) {
      b.w2 = static_cast<uint8_t*>(w.p) + (copies + i % copies) * stride;
      b.y2 = static_cast<float*>(y2.p);
    }
    if (c.experts > 0) b.ids = static_cast<const int32_t*>(dids.p) + size_t(i) * size_t(c.slots);
    cuda::matvec(b, s);
  });
  const double bytes =
      double(read_bytes) + double(cuda::act_bytes(fmt, nx)) + double(c.slots * c.rows * 4 * (c.paired ? 2 : 1));
  return {cuda::matvec_kernel_id(c.type, c.experts > 0, c.xf32) + (c.paired ? "+pair" : "") + (c.overlap ? "+pdl" : ""), c.name, c.type, c.rows, c.cols, c.experts, c.slots,
          bytes, us, bytes / (us * 1e-6) / 1e9};
}

// The prefill baseline: TFLOP/s of dequantise + cuBLAS for n_tok tokens.
Row bench_gemm(DType t, int64_t rows, int64_t cols, int64_t n_tok, cudaStream_t s) {
  const int64_t rb = row_bytes(t, cols);
  Buf w(size_t(rows * rb)), x(size_t(n_tok * cols) * 4), y(size_t(n_tok * rows) * 4);
  cuda::fill_random(t, w.p, rows * cols, {3}, s);
  cuda::fill_random(DType::F32, x.p, n_tok * cols, {4, 1.0f}, s);
  const int64_t tile = std::min<int64_t>(rows, 16384);
  const int64_t wsb = cuda::CublasGemm::workspace_bytes(cols, n_tok, tile);
  Buf ws{size_t(wsb)};
  cuda::CublasGemm g(s);
  const double us = time_calls(s, 5, 5, [&](int) {
    g.run(t, w.p, rows, cols, static_cast<const float*>(x.p), n_tok, static_cast<float*>(y.p), ws.p, wsb, tile);
  });
  const double flops = 2.0 * double(rows) * double(cols) * double(n_tok);
  return {cuda::kGemmDequantCublasF16, str("prefill n_tok=", n_tok), t, rows, cols, 0, int32_t(n_tok),
          flops, us, flops / (us * 1e-6) / 1e12};
}

// ---- Prefill MoE: cuda.moe.grouped_dequant_mma vs the per-slot matvec path ----------
// One DS4 layer's routed experts at real shapes (256 experts; gate/up IQ2_XXS 4096->2048,
// down Q2_K 2048->4096; 6 per token, uniform random distinct ids; random valid weights)
// at n tokens. FLOPs = 2·n·6·3·4096·2048. Bytes: grouped = each touched expert's weights
// once per 64-slot tile (from the actual routing) + activations (u, its f16 copy, mid f16
// and per-slot f32 outputs written and read, out); matvec = the expert's weights once per
// slot + its f32 intermediates. Tensor-core peak = SMs · 4096 dense f16 flop/clk (sm_90
// mma) · the SM clock the device reports.
struct MoeRow {
  std::string kernel;
  int64_t n;
  double flops, bytes, us;
};

std::vector<MoeRow> bench_moe(cudaStream_t s, bool quick) {
  const int64_t NE = 256, dim = 4096, ff = 2048, K = 6, nmax = 2048;
  const DType gt = DType::IQ2_XXS, dt = DType::Q2_K;
  const int64_t gbytes = row_bytes(gt, dim) * ff, dbytes = row_bytes(dt, ff) * dim;  // one expert
  Buf g(size_t(gbytes * NE)), u(size_t(gbytes * NE)), d(size_t(dbytes * NE));
  cuda::fill_random(gt, g.p, NE * ff * dim, {11, 0.05f}, s);
  cuda::fill_random(gt, u.p, NE * ff * dim, {12, 0.05f}, s);
  cuda::fill_random(dt, d.p, NE * dim * ff, {13, 0.05f}, s);
  Buf x(size_t(nmax * dim) * 4), wts(size_t(nmax * K) * 4), out(size_t(nmax * dim) * 4), ids(size_t(nmax * K) * 4);
  cuda::fill_random(DType::F32, x.p, nmax * dim, {14, 1.0f}, s);
  cuda::fill_random(DType::F32, wts.p, nmax * K, {15, 0.2f, 0.3f}, s);
  std::vector<int32_t> h_ids(size_t(nmax * K));
  std::vector<int32_t> all(static_cast<size_t>(NE));
  std::mt19937 rng(5);
  for (int64_t e = 0; e < NE; ++e) all[size_t(e)] = int32_t(e);
  for (int64_t t = 0; t < nmax; ++t) {
    std::shuffle(all.begin(), all.end(), rng);
    std::copy(all.begin(), all.begin() + K, h_ids.begin() + t * K);
  }
  ck(cudaMemcpy(ids.p, h_ids.data(), h_ids.size() * 4, cudaMemcpyHostToDevice), "moe ids");
  const int64_t gwb = cuda::moe_grouped_work_bytes(nmax, K, dim, ff, NE);
  Buf gw{size_t(gwb)};
  Buf mw{size_t(cuda::moe_work_floats(nmax, K, dim, ff)) * 4};
  const int64_t qact = std::max(cuda::linear_qact_bytes(gt, dim, nmax * K), cuda::linear_qact_bytes(dt, ff, nmax * K));
  Buf qa{size_t(qact)};
  cuda::LinearWorkspace ws;
  ws.qact = qa.p;
  ws.qact_bytes = qact;
  ck(cudaStreamSynchronize(s), "moe bench set-up");

  auto weight = [&](const Buf& b, DType t, int64_t rows, int64_t cols, const char* name) {
    ref::Weight w;
    w.type = t;
    w.data = static_cast<const uint8_t*>(b.p);
    w.rows = rows;
    w.cols = cols;
    w.experts = NE;
    w.name = name;
    return w;
  };
  std::vector<MoeRow> rows;
  for (int64_t n : {int64_t(512), int64_t(2048)}) {
    cuda::MoeArgs m;
    m.u = static_cast<const float*>(x.p);
    m.n = n;
    m.k = K;
    m.ids = static_cast<const int32_t*>(ids.p);
    m.weights = static_cast<const float*>(wts.p);
    m.gate = weight(g, gt, ff, dim, "gate");
    m.up = weight(u, gt, ff, dim, "up");
    m.down = weight(d, dt, dim, ff, "down");
    m.limit = 10.0f;
    m.out = static_cast<float*>(out.p);
    m.work = static_cast<float*>(mw.p);
    m.grouped_work = gw.p;
    m.grouped_work_bytes = gwb;
    const double q = double(n * K), flops = 2.0 * q * 3.0 * double(dim) * double(ff);
    std::vector<int64_t> cnt(size_t(NE), 0);
    for (int64_t i = 0; i < n * K; ++i) ++cnt[size_t(h_ids[size_t(i)])];
    double tiles = 0;
    for (int64_t c : cnt) tiles += double((c + cuda::kMoeGroupedTileSlots - 1) / cuda::kMoeGroupedTileSlots);
    const double expert = double(2 * gbytes + dbytes);
    const double gact = double(n * dim) * (4 + 2 + 4) + q * (double(ff) * 2 * 2 + double(dim) * 4 * 2);
    const double mact = q * 4.0 * 2.0 * double(2 * dim + 3 * ff) + double(n * dim) * 4 * 2;
    const double gus = time_calls(s, quick ? 2 : 5, 3, [&](int) { cuda::moe_grouped(m, s); });
    rows.push_back({cuda::kMoeGroupedDequantMma, n, flops, tiles * expert + gact, gus});
    cuda::MoeArgs mv = m;
    mv.grouped_work = nullptr;
    const double mus = time_calls(s, 1, quick ? 2 : 3, [&](int) { cuda::moe(mv, ws, s); });
    rows.push_back({"cuda.moe.matvec", n, flops, q * expert + mact, mus});
  }
  return rows;
}

std::vector<Case> ds4_cases(bool quick) {
  std::vector<Case> v = {
      {"attn_q_a 4096->1024", DType::Q8_0, 1024, 4096},
      {"attn_q_b 1024->32768", DType::Q8_0, 32768, 1024},
      {"attn_out_b 8192->4096", DType::Q8_0, 4096, 8192},
      {"attn_out_a 4096->8192", DType::Q8_0, 8192, 4096},
      {"attn_kv 4096->512", DType::Q8_0, 512, 4096},
      {"output head 4096->129280", DType::Q8_0, 129280, 4096},
      {"expert gate x6 4096->2048", DType::IQ2_XXS, 2048, 4096, 256, 6},
      {"expert gate+up x6 4096->2048", DType::IQ2_XXS, 2048, 4096, 256, 6, false, false, true},
      {"expert gate dense 4096->2048", DType::IQ2_XXS, 2048, 4096},
      {"expert down x6 2048->4096", DType::Q2_K, 4096, 2048, 256, 6, true},
      {"expert down dense 2048->4096", DType::Q2_K, 4096, 2048},
      {"Q4_K x6 4096->2048", DType::Q4_K, 2048, 4096, 256, 6},
      {"Q4_K gate+up x6 4096->2048", DType::Q4_K, 2048, 4096, 256, 6, false, false, true},
      {"Q4_K dense 2048->4096", DType::Q4_K, 4096, 2048},
      {"Q4_K dense 4096->14336", DType::Q4_K, 14336, 4096},
      {"F16 indexer attn_q_b 1024->8192", DType::F16, 8192, 1024},
      {"F16 compressor kv 4096->1024", DType::F16, 1024, 4096},
      {"F16 compressor kv 4096->512", DType::F16, 512, 4096},
      {"F16 router 4096->256", DType::F16, 256, 4096},
      {"F32 4096->4096", DType::F32, 4096, 4096},
      {"shared expert Q8_0 4096->2048", DType::Q8_0, 2048, 4096},
      {"shared gate+up Q8_0 4096->2048", DType::Q8_0, 2048, 4096, 0, 1, false, false, true},
      // Not DS4 shapes: one large call per type, where the per-call cost (launch gap, first
      // round trip, tail) is small next to the bytes, so the row shows the kernel's
      // streaming rate apart from the DS4 calls' fixed costs.
      {"streaming 4096->65536", DType::IQ2_XXS, 65536, 4096},
      {"streaming 4096->65536", DType::Q2_K, 65536, 4096},
      {"streaming 4096->32768", DType::Q4_K, 32768, 4096},
      {"streaming 4096->16384", DType::F16, 16384, 4096},
  };
  // The same calls launched with overlap_prev (programmatic dependent launch): a decode
  // graph's back-to-back matvecs, where a launch's start overlaps the previous one's tail.
  const size_t plain = v.size();
  for (size_t i = 0; i < plain; ++i) {
    Case c = v[i];
    c.overlap = true;
    v.push_back(c);
  }
  if (!quick) {
    v.push_back({"output head xf32", DType::Q8_0, 129280, 4096, 0, 1, false, true});
    v.push_back({"expert gate x6 xf32", DType::IQ2_XXS, 2048, 4096, 256, 6, false, true});
    v.push_back({"expert down x6 xf32", DType::Q2_K, 4096, 2048, 256, 6, true, true});
  }
  return v;
}

// ---- Hyper-connections: where hc_pre's time goes ---------------------------------------
// DS4 shapes (4 streams of 4096, F16 mix weights [24][16384]) at a decode step and a
// 2048-token prefill chunk. hc_pre with 20 Sinkhorn iterations (the model's) and with 1
// separates the serial Sinkhorn chain from the mix and the collapse; hc_head is the same
// mix kernel with a 4-row product and no Sinkhorn; hc_post is the elementwise update.
void bench_hc(cudaStream_t s, bool quick) {
  ref::HcShape hs;
  hs.hc = 4;
  hs.dim = 4096;
  const int64_t hd = hs.hc * hs.dim, M = hs.mix(), nmax = 2048;
  Buf X(size_t(nmax * hd) * 4), Xo(size_t(nmax * hd) * 4), fn(size_t(M * hd) * 2), hfn(size_t(hs.hc * hd) * 2),
      scale(16), base(size_t(M) * 4), xin(size_t(nmax * hs.dim) * 4), post(size_t(nmax * hs.hc) * 4),
      comb(size_t(nmax * hs.hc * hs.hc) * 4), scratch(size_t(nmax * (hd + M)) * 4);
  cuda::fill_random(DType::F32, X.p, nmax * hd, {21, 1.0f}, s);
  cuda::fill_random(DType::F16, fn.p, M * hd, {22}, s);
  cuda::fill_random(DType::F16, hfn.p, hs.hc * hd, {23}, s);
  cuda::fill_random(DType::F32, scale.p, 4, {24, 0.5f}, s);
  cuda::fill_random(DType::F32, base.p, M, {25, 0.5f}, s);
  auto weight = [&](const Buf& b, int64_t rows, const char* name) {
    ref::Weight w;
    w.type = DType::F16;
    w.data = static_cast<const uint8_t*>(b.p);
    w.rows = rows;
    w.cols = hd;
    w.name = name;
    return w;
  };
  const ref::Weight wf = weight(fn, M, "hc_fn"), wh = weight(hfn, hs.hc, "output_hc_fn");
  const auto* sc = static_cast<const float*>(scale.p);
  const auto* bs = static_cast<const float*>(base.p);
  std::printf("# hc kernels, DS4 shapes (hc 4, dim 4096, F16 mix [24][16384]); us per call (graph of back-to-back calls)\n");
  for (int64_t n : {int64_t(1), int64_t(2048)}) {
    const int launches = n == 1 ? (quick ? 50 : 200) : (quick ? 3 : 10);
    for (int64_t iters : {int64_t(20), int64_t(1)}) {
      ref::HcShape h = hs;
      h.sinkhorn_iters = iters;
      const double us = time_calls(s, launches, 5, [&](int) {
        cuda::hc_pre(static_cast<const float*>(X.p), n, wf, sc, bs, h, static_cast<float*>(xin.p),
                     static_cast<float*>(post.p), static_cast<float*>(comb.p), static_cast<float*>(scratch.p), s);
      });
      std::printf("hc_pre   n=%-5lld sinkhorn %2lld iters %10.2f us\n", (long long)n, (long long)iters, us);
    }
    const double head = time_calls(s, launches, 5, [&](int) {
      cuda::hc_head(static_cast<const float*>(X.p), n, wh, sc, bs, hs, static_cast<float*>(xin.p),
                    static_cast<float*>(scratch.p), s);
    });
    std::printf("hc_head  n=%-5lld                   %10.2f us\n", (long long)n, head);
    const double pst = time_calls(s, launches, 5, [&](int) {
      cuda::hc_post(static_cast<const float*>(xin.p), static_cast<const float*>(X.p), static_cast<const float*>(post.p),
                    static_cast<const float*>(comb.p), n, hs, static_cast<float*>(Xo.p), s);
    });
    std::printf("hc_post  n=%-5lld                   %10.2f us\n", (long long)n, pst);
    std::fflush(stdout);
  }
}

std::string today() {
  const std::time_t t = std::time(nullptr);
  char b[16];
  std::strftime(b, sizeof b, "%Y-%m-%d", std::gmtime(&t));
  return b;
}

// Prints the MoE rows; CSV (when moe_csv is set) with GPU, date and commit in the header.
void report_moe(const std::vector<MoeRow>& rows, const cudaDeviceProp& prop, double read_gbps, const std::string& moe_csv) {
  int dev = 0, khz = 0;
  ck(cudaGetDevice(&dev), "device");
  ck(cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, dev), "clock");
  const double peak = double(prop.multiProcessorCount) * 4096.0 * double(khz) * 1e3;  // dense f16 flop/s
  std::printf("# prefill MoE, one DS4 layer (256 experts, IQ2_XXS gate/up, Q2_K down, 6/token); f16 tensor peak %.0f TFLOP/s\n",
              peak / 1e12);
  for (const MoeRow& r : rows)
    std::printf("%-28s n=%-5lld %9.1f us %7.1f TFLOP/s %5.1f%% tc %8.0f MB %6.0f GB/s %5.1f%% read %8.0f tok/s/layer\n",
                r.kernel.c_str(), (long long)r.n, r.us, r.flops / r.us / 1e6, 100 * r.flops / (r.us * 1e-6) / peak,
                r.bytes / 1e6, r.bytes / r.us / 1e3, 100 * r.bytes / r.us / 1e3 / read_gbps, double(r.n) / (r.us * 1e-6));
  if (moe_csv.empty()) return;
  std::ofstream out(moe_csv);
  if (!out) fail("cannot write ", moe_csv);
  out << "# flashplan bench-kernels --moe, " << fp::build_commit() << ", " << today() << ", " << prop.name << " ("
      << prop.multiProcessorCount << " SMs, " << khz / 1000 << " MHz)\n";
  out << "# one DS4 layer's routed experts: 256 x (IQ2_XXS gate/up 4096->2048, Q2_K down 2048->4096), 6 per token;"
         " flops = 2*n*6*3*4096*2048; tc_peak_tflops = SMs*4096*clock\n";
  out << "kernel,tokens,flops,bytes,us,tflops,pct_tc,gbps,pct_read,tok_per_s\n";
  for (const MoeRow& r : rows)
    out << r.kernel << "," << r.n << "," << r.flops << "," << r.bytes << "," << r.us << "," << r.flops / r.us / 1e6 << ","
        << 100 * r.flops / (r.us * 1e-6) / peak << "," << r.bytes / r.us / 1e3 << "," << 100 * r.bytes / r.us / 1e3 / read_gbps
        << "," << double(r.n) / (r.us * 1e-6) << "\n";
}

// --only: a case runs when its "<type> <name>" contains one of the '|'-separated texts
// (e.g. "IQ2_XXS expert gate+up|F16 compressor"); empty: every case.
bool selected(const std::string& only, const std::string& what) {
  if (only.empty()) return true;
  size_t b = 0;
  while (b <= only.size()) {
    const size_t e = std::min(only.find('|', b), only.size());
    if (e > b && what.find(only.substr(b, e - b)) != std::string::npos) return true;
    b = e + 1;
  }
  return false;
}

int run(const std::string& csv, bool quick, bool moe, bool hc, const std::string& moe_csv, const std::string& only) {
  int dev = 0;
  ck(cudaGetDevice(&dev), "device");
  cudaDeviceProp prop{};
  ck(cudaGetDeviceProperties(&prop, dev), "device properties");
  cuda::quant_cuda_init();
  cudaStream_t s;
  ck(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
  const cuda::Bandwidth bw = cuda::measure_bandwidth();
  std::printf("# %s, %d SMs, %.1f GiB, L2 %d MiB; copy %.0f GB/s (read+write), read %.0f GB/s\n", prop.name,
              prop.multiProcessorCount, double(prop.totalGlobalMem) / double(1ull << 30), prop.l2CacheSize >> 20,
              bw.copy_gbps, bw.read_gbps);
  if (hc) {  // the hyper-connection kernels only
    bench_hc(s, quick);
    ck(cudaStreamDestroy(s), "stream");
    return 0;
  }
  if (moe) {  // the prefill MoE cases only
    report_moe(bench_moe(s, quick), prop, bw.read_gbps, moe_csv);
    ck(cudaStreamDestroy(s), "stream");
    return 0;
  }
  std::vector<Row> rows;
  for (const Case& c : ds4_cases(quick)) {
    if (!selected(only, std::string(dtype_name(c.type)) + " " + c.name)) continue;
    rows.push_back(bench_matvec(c, s, quick));
    const Row& r = rows.back();
    std::printf("%-28s %-30s %9.0f KB %9.2f us %7.0f GB/s %5.1f%% copy %5.1f%% read\n", r.kernel.c_str(), r.name.c_str(),
                r.bytes / 1e3, r.us, r.gbps, 100 * r.gbps / bw.copy_gbps, 100 * r.gbps / bw.read_gbps);
    std::fflush(stdout);
  }
  for (int64_t n_tok : {int64_t(512), int64_t(2048)}) {
    if (!only.empty()) break;
    rows.push_back(bench_gemm(DType::Q8_0, 4096, 4096, n_tok, s));
    const Row& r = rows.back();
    std::printf("%-28s %-30s Q8_0 4096x4096 %9.1f us %7.1f TFLOP/s (dequant + f16 GEMM)\n", r.kernel.c_str(),
                r.name.c_str(), r.us, r.gbps);
  }
  ck(cudaStreamDestroy(s), "stream");
  if (!csv.empty()) {
    std::ofstream out(csv);
    if (!out) fail("cannot write ", csv);
    out << "# flashplan bench-kernels, " << fp::build_commit() << ", " << today() << ", " << prop.name << " ("
        << prop.multiProcessorCount << " SMs)\n";
    out << "# copy_gbps=" << bw.copy_gbps << " read_gbps=" << bw.read_gbps
        << " (copy counts bytes read + written; matvec rows: bytes = weights read + activations + outputs;"
           " gemm rows: bytes column = FLOPs, gbps column = TFLOP/s)\n";
    out << "kernel,case,type,rows,cols,experts,slots,bytes,us,gbps,pct_copy,pct_read\n";
    for (const Row& r : rows) {
      const bool gemm = r.kernel == cuda::kGemmDequantCublasF16;
      out << r.kernel << ",\"" << r.name << "\"," << dtype_name(r.type) << "," << r.rows << "," << r.cols << ","
          << r.experts << "," << r.slots << "," << r.bytes << "," << r.us << "," << r.gbps << ","
          << (gemm ? 0.0 : 100 * r.gbps / bw.copy_gbps) << "," << (gemm ? 0.0 : 100 * r.gbps / bw.read_gbps) << "\n";
    }
  }
  return 0;
}

}  // namespace
}  // namespace fp::cli::bench_kernels

FP_COMMAND("bench-kernels", "Microbenchmark the CUDA decode matvecs at DS4 sizes against the measured copy ceiling",
           [](CLI::App& app) {
             auto csv = std::make_shared<std::string>();
             auto quick = std::make_shared<bool>(false);
             auto moe = std::make_shared<bool>(false);
             auto hc = std::make_shared<bool>(false);
             auto moe_csv = std::make_shared<std::string>();
             auto only = std::make_shared<std::string>();
             app.add_option("--csv", *csv, "Write the results as CSV (with GPU, date and commit in the header)");
             app.add_flag("--quick", *quick, "Fewer launches and repetitions, no .xf32 variants");
             app.add_flag("--moe", *moe, "Only the prefill MoE cases: grouped tensor-core path vs per-slot matvecs");
             app.add_flag("--hc", *hc, "Only the hyper-connection kernels (hc_pre, hc_head, hc_post) at decode and prefill sizes");
             app.add_option("--moe-csv", *moe_csv, "With --moe: write the MoE rows as CSV");
             app.add_option("--only", *only, "Only the matvec cases whose \"<type> <case>\" contains one of these '|'-separated texts (no GEMM rows)");
             return [csv, quick, moe, hc, moe_csv, only]() {
               return fp::cli::bench_kernels::run(*csv, *quick, *moe, *hc, *moe_csv, *only);
             };
           });
