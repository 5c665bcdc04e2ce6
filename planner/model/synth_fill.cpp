// synth_fill: the bytes of one synth tensor, chunk-parallel and deterministic.
//
// Float-like formats (F32/F16/BF16/Q8_0/Q4_0) quantise sampled floats with
// ops/quant's reference quantisers. The real files' low-bit formats (Q2_K, Q4_K,
// IQ2_XXS) have no quantiser here, so their blocks are built field by field: random
// quants, random sub-block scales in a moderate range, and one f16 super-scale per
// tensor chosen so the dequantised values have the target standard deviation. That
// scale comes from dequantising a fixed calibration sample with d = 1 through
// ops/quant (so it follows the real grids and layouts, not a guess), and the K-quant
// mins are set to cancel the mean of the unsigned quants.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops/core/error.h"
#include "ops/core/half.h"
#include "ops/core/parallel.h"
#include "ops/quant/dequant.h"
#include "ops/quant/quantize.h"
#include "planner/model/synth.h"

namespace fp {
namespace {

constexpr int64_t kChunk = 1 << 16;  // elements per RNG stream; a multiple of every block size

// ---- random numbers ---------------------------------------------------------------------

uint64_t mix64(uint64_t z) {  // splitmix64 finaliser
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t name_hash(std::string_view s) {  // FNV-1a
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

struct Rng {
  uint64_t s;
  uint64_t next() { return mix64(s += 0x9e3779b97f4a7c15ULL); }
  uint32_t below(uint32_t n) { return uint32_t((next() >> 32) * n >> 32); }
  // Irwin-Hall(4) from one draw: four 16-bit uniforms, standardised. Bounded at
  // ±2·√3 σ, which keeps every block's amax, and so its f16 scale, tame.
  float normal() {
    const uint64_t r = next();
    const int64_t sum = int64_t(r & 0xffff) + int64_t((r >> 16) & 0xffff) + int64_t((r >> 32) & 0xffff) + int64_t(r >> 48);
    return float((double(sum) - 131070.0) / 37837.2262);  // mean 4·32767.5, sd 65536/√3
  }
  float uniform() { return float(next() >> 40) * (1.0f / 16777216.0f); }
};

Rng stream(uint64_t seed, std::string_view name, uint64_t chunk) {
  return Rng{mix64(mix64(seed ^ name_hash(name)) + chunk * 0xd1b54a32d192ed03ULL)};
}

// ---- what values a tensor gets ------------------------------------------------------------

struct Init {
  enum Kind { Normal, Uniform, ExpertIds } kind = Normal;
  float a = 0, b = 1;  // Normal: mean, sd; Uniform: [a, b)
};

bool ends_with(std::string_view s, std::string_view t) { return s.size() >= t.size() && s.substr(s.size() - t.size()) == t; }

Init init_for(const TensorSpec& s) {
  switch (s.cls) {
    case TensorClass::Index: return {Init::ExpertIds};
    case TensorClass::Vector:
      if (ends_with(s.role, "_base")) return {Init::Normal, 0, 0.5f};     // HC base
      if (ends_with(s.role, "_scale")) return {Init::Uniform, 0.5f, 1.5f};  // HC scale
      if (s.role == "attn_sinks") return {Init::Normal, 0, 1};
      if (s.role == "exp_probs_b") return {Init::Normal, 0, 0.2f};
      return {Init::Normal, 1, 0.1f};  // norm weights
    case TensorClass::Matrix:
      if (ends_with(s.role, "_ape")) return {Init::Normal, 0, 0.5f};
      return {Init::Normal, 0, synth_matrix_sigma(s)};
  }
  return {};
}

// ---- directly built low-bit blocks --------------------------------------------------------

void put_f16(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, 2);
}

// Q2_K (84 B): scales[16] (low nibble scale, high nibble min), qs[64], d, dmin.
// value = d·sc·q − dmin·m with q in 0..3; m = 1.5·sc, rounded at random when sc is
// odd so that the mean stays zero.
void block_q2_k(Rng& r, float d, uint8_t* b) {
  for (int i = 0; i < 16; ++i) {
    const uint32_t sc = 4 + r.below(7), m = (3 * sc + r.below(2)) / 2;
    b[i] = uint8_t(sc | m << 4);
  }
  for (int i = 0; i < 64; i += 8) {
    const uint64_t q = r.next();
    std::memcpy(b + 16 + i, &q, 8);
  }
  put_f16(b + 80, d);
  put_f16(b + 82, d);
}

// Q4_K (144 B): d, dmin, scales[12] (8 six-bit scale/min pairs), qs[128].
// value = d·sc·q − dmin·m with q in 0..15; dmin = 8d and m = 7.5·sc/8 (randomly rounded,
// unbiased) centre q.
void block_q4_k(Rng& r, float d, uint8_t* b) {
  put_f16(b, d);
  put_f16(b + 2, 8 * d);
  uint8_t* s = b + 4;
  std::memset(s, 0, 12);
  for (int j = 0; j < 8; ++j) {
    const uint32_t sc = 16 + r.below(33), m = (15 * sc + r.below(16)) / 16;
    if (j < 4) {
      s[j] = uint8_t(sc);
      s[j + 4] = uint8_t(m);
    } else {
      s[j + 4] = uint8_t((sc & 0xf) | (m & 0xf) << 4);
      s[j - 4] |= uint8_t((sc >> 4) << 6);
      s[j] |= uint8_t((m >> 4) << 6);
    }
  }
  for (int i = 0; i < 128; i += 8) {
    const uint64_t q = r.next();
    std::memcpy(b + 16 + i, &q, 8);
  }
}

// IQ2_XXS (66 B): d, then per 32 values 4 grid indices and a word of 4×7 sign bits
// plus a 4-bit scale (value scale d·(0.5+s)/4). Indices and signs are any bit
// pattern; s is kept in 4..11.
void block_iq2_xxs(Rng& r, float d, uint8_t* b) {
  put_f16(b, d);
  for (int g = 0; g < 8; ++g) {
    const uint64_t x = r.next();
    const uint32_t grid = uint32_t(x), signs = uint32_t(x >> 32) & 0x0fffffffu;
    const uint32_t aux = signs | (4 + r.below(8)) << 28;
    std::memcpy(b + 2 + 8 * g, &grid, 4);
    std::memcpy(b + 6 + 8 * g, &aux, 4);
  }
}

using BlockFn = void (*)(Rng&, float, uint8_t*);
BlockFn block_fn(DType t) {
  switch (t) {
    case DType::Q2_K: return block_q2_k;
    case DType::Q4_K: return block_q4_k;
    case DType::IQ2_XXS: return block_iq2_xxs;
    default: return nullptr;
  }
}

// RMS and mean of the dequantised values of blocks built with d = 1.
struct BlockStats { double rms = 0, mean = 0; };
BlockStats unit_stats(DType t) {
  const int nblocks = 2048;
  const TypeTraits& tr = traits(t);
  std::vector<uint8_t> blocks(size_t(nblocks * tr.bytes));
  Rng r{0x5eed5eedULL};
  for (int i = 0; i < nblocks; ++i) block_fn(t)(r, 1.0f, blocks.data() + i * tr.bytes);
  std::vector<float> v(size_t(nblocks * tr.block));
  dequantize_row(t, blocks.data(), v.data(), int64_t(v.size()));
  double s = 0, s2 = 0;
  for (float x : v) { s += x; s2 += double(x) * x; }
  return {std::sqrt(s2 / double(v.size())), s / double(v.size())};
}

double unit_rms(DType t) {
  static const double q2 = unit_stats(DType::Q2_K).rms, q4 = unit_stats(DType::Q4_K).rms,
                      iq2 = unit_stats(DType::IQ2_XXS).rms;
  return t == DType::Q2_K ? q2 : t == DType::Q4_K ? q4 : iq2;
}

// ---- fills ----------------------------------------------------------------------------------

void fill_expert_ids(const SynthConfig& s, const SynthTensor& t, std::span<uint8_t> dst) {
  const int64_t k = t.spec.ne[0], rows = t.spec.ne[1];
  const uint32_t n_expert = s.model.n_expert;
  if (uint64_t(k) > n_expert) fail(t.spec.name, ": ", k, " experts per token, more than the ", n_expert, " experts");
  const int64_t rows_per_chunk = 4096;
  parallel_for((rows + rows_per_chunk - 1) / rows_per_chunk, 1, [&](int64_t c0, int64_t c1) {
    std::vector<int32_t> row(static_cast<size_t>(k));
    for (int64_t c = c0; c < c1; ++c) {
      Rng r = stream(s.seed, t.spec.name, uint64_t(c));
      for (int64_t i = c * rows_per_chunk; i < std::min(rows, (c + 1) * rows_per_chunk); ++i) {
        for (int64_t j = 0; j < k; ++j) {  // distinct experts by rejection (k ≤ n_expert)
          int32_t e;
          do e = int32_t(r.below(n_expert)); while (std::find(row.begin(), row.begin() + j, e) != row.begin() + j);
          row[size_t(j)] = e;
        }
        std::memcpy(dst.data() + 4 * i * k, row.data(), size_t(4 * k));
      }
    }
  });
}

}  // namespace

float synth_matrix_sigma(const TensorSpec& spec) {
  if (spec.role == "token_embd" || spec.role == "nextn.embed_tokens") return 1.0f;
  return float(1.0 / std::sqrt(double(spec.ne[0])));
}

void synth_fill(const SynthConfig& s, const SynthTensor& t, std::span<uint8_t> dst) {
  if (dst.size() != t.n_bytes) fail("internal: ", t.spec.name, ": fill of ", dst.size(), " bytes, expected ", t.n_bytes);
  const Init init = init_for(t.spec);
  if (init.kind == Init::ExpertIds) {
    if (t.type != DType::I32) fail(t.spec.name, ": expert ids must be I32, found ", dtype_name(t.type));
    fill_expert_ids(s, t, dst);
    return;
  }
  const TypeTraits& tr = traits(t.type);
  const int64_t n = t.spec.ne[0] * t.spec.ne[1] * t.spec.ne[2] * t.spec.ne[3];
  const int64_t n_chunks = (n + kChunk - 1) / kChunk;
  const BlockFn direct = block_fn(t.type);
  if (direct && !(init.kind == Init::Normal && init.a == 0))
    fail(t.spec.name, ": synth builds ", tr.name, " blocks only for zero-mean weights");
  if (!direct && !can_quantize(t.type)) fail(t.spec.name, ": synth cannot write dtype ", tr.name);
  const float d = direct ? float(init.b / unit_rms(t.type)) : 0.0f;

  parallel_for(n_chunks, 1, [&](int64_t c0, int64_t c1) {
    std::vector<float> buf;
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t e0 = c * kChunk, e1 = std::min(n, e0 + kChunk);
      uint8_t* out = dst.data() + e0 / tr.block * tr.bytes;
      Rng r = stream(s.seed, t.spec.name, uint64_t(c));
      if (direct) {
        for (int64_t b = 0; b < (e1 - e0) / tr.block; ++b) direct(r, d, out + b * tr.bytes);
        continue;
      }
      buf.resize(size_t(e1 - e0));
      if (init.kind == Init::Uniform)
        for (float& x : buf) x = init.a + (init.b - init.a) * r.uniform();
      else
        for (float& x : buf) x = init.a + init.b * r.normal();
      quantize_row(t.type, buf.data(), out, e1 - e0);
    }
  });
}

}  // namespace fp
