// Host entry of the hyper-connection family's CUDA kernels (hc.cu), the same ops as the
// CPU reference (hc.h) over device buffers:
//   embed          token rows (F32, F16, BF16, Q8_0 tables) into every HC stream
//   hc_pre         flat RMSNorm and mix product (fn: F32/F16/BF16/Q8_0) fused, split
//                  over K -> gates + Sinkhorn in double, one lane per hc² entry ->
//                  collapse
//   hc_post        X' = post·a + comb^T X
//   hc_head        the output head's collapse (pre gates only)
// Token ids come from device memory; an id outside the table reads row 0 (never outside
// the table) and sets bit 1 of *err, which the executor turns into an fp::Error after
// the step. Every launcher takes a Launch (ops/core/launch.h: stream, PDL). CUDA-free header.
#pragma once
#include <cstdint>

#include "ops/core/launch.h"
#include "ops/hc/hc.h"

namespace fp::cuda {

inline constexpr uint32_t kErrTokenRange = 1;  // a token id outside the vocabulary

bool embed_supported(DType t);
// X [n][hc*dim]; table [vocab][dim] in device memory.
void embed(const ref::Weight& table, const int32_t* tokens, int64_t n, const ref::HcShape& s, float* X,
           uint32_t* err, Launch l);

// fn [mix][hc*dim] (any matvec dtype), scale[3], base[mix] (device). Outputs x_in [n][dim],
// post [n][hc], comb [n][hc][hc]. scratch: n*(hc*dim + mix) floats (the CPU's layout).
void hc_pre(const float* X, int64_t n, const ref::Weight& fn, const float* scale, const float* base,
            const ref::HcShape& s, float* x_in, float* post, float* comb, float* scratch, Launch l);

// Xout [n][hc*dim] (must not alias X).
void hc_post(const float* a, const float* X, const float* post, const float* comb, int64_t n, const ref::HcShape& s,
             float* Xout, Launch l);

// fn [hc][hc*dim], scale[1], base[hc] -> z [n][dim]. scratch: n*(hc*dim + hc) floats.
void hc_head(const float* X, int64_t n, const ref::Weight& fn, const float* scale, const float* base,
             const ref::HcShape& s, float* z, float* scratch, Launch l);

}  // namespace fp::cuda
