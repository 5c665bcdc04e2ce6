// The CPU executor's view of a bound fp::Model: every tensor as an ops-level
// ref::Weight (matrices, any dtype) or an f32 pointer (1-D parameters, which the model
// validation guarantees are F32), per layer and for the MTP block. Built once at load;
// zero-copy over the mmapped GGUF.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "ops/linear/linear.h"
#include "planner/model/model.h"

namespace fp::cpu {

struct LayerW {
  uint32_t index = 0;         // n_layer for the MTP block
  LayerKind kind = LayerKind::SWA;
  uint32_t ratio = 0;
  bool hash = false;
  float clamp_exp = 0, clamp_shexp = 0;

  ref::Weight hc_attn_fn;
  const float* hc_attn_scale = nullptr;
  const float* hc_attn_base = nullptr;
  const float* attn_norm = nullptr;
  ref::Weight q_a, q_b, kv, out_a, out_b;
  const float* q_a_norm = nullptr;
  const float* kv_norm = nullptr;
  const float* sinks = nullptr;

  ref::Weight comp_kv, comp_gate, comp_ape;  // compressed layers
  const float* comp_norm = nullptr;
  ref::Weight idx_q_b, idx_proj, idx_comp_kv, idx_comp_gate, idx_comp_ape;  // CSA
  const float* idx_comp_norm = nullptr;

  ref::Weight hc_ffn_fn;
  const float* hc_ffn_scale = nullptr;
  const float* hc_ffn_base = nullptr;
  const float* ffn_norm = nullptr;
  ref::Weight gate_inp;
  const float* exp_bias = nullptr;    // top-k layers
  const int32_t* tid2eid = nullptr;   // hash layers
  ref::Weight gate_exps, up_exps, down_exps;
  ref::Weight gate_sh, up_sh, down_sh;
};

struct MtpW {
  MtpLayout layout = MtpLayout::None;
  LayerW layer;
  ref::Weight e_proj, h_proj, eh_proj;
  const float* enorm = nullptr;
  const float* hnorm = nullptr;
  const float* norm = nullptr;
  ref::Weight hc_head_fn;
  const float* hc_head_base = nullptr;
  const float* hc_head_scale = nullptr;
  ref::Weight embed, head;
};

struct ModelW {
  ref::Weight token_embd, output, output_hc_fn;
  const float* output_hc_base = nullptr;
  const float* output_hc_scale = nullptr;
  const float* output_norm = nullptr;
  std::vector<LayerW> layers;
  std::optional<MtpW> mtp;
  // Every tensor of the model (and MTP) file by GGUF name, for binding op-graph nodes.
  std::unordered_map<std::string, ref::Weight> by_name;
};

ModelW bind_weights(const Model& m);
// The same binding over another copy of the tensors: `data` gives each tensor's bytes
// (the CUDA engine: their device addresses; a header-only GGUF has no bytes of its own).
using TensorData = std::function<const uint8_t*(const TensorRef&)>;
ModelW bind_weights(const Model& m, const TensorData& data);

}  // namespace fp::cpu
