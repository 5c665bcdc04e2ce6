// The DS4 tensor table a config implies (MODEL.md §3) and its validation against a
// GGUF: names, shapes, allowed dtypes, which layers carry what, for the trunk and
// both MTP layouts (antirez's separate `mtp.0.*` file, llama.cpp's in-file
// `blk.{n_layer}.*` + `nextn.*`).
//
// Dtypes are checked per tensor class, not against one quant recipe: the real files
// mix Q8_0/F16/F32/IQ2_XXS/Q2_K/Q4_K and llama.cpp/unsloth use their own mixes, so any
// matrix type flashplan can dequantise is accepted; 1-D parameters must be F32 and the
// hash-routing table I32.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "planner/gguf/gguf.h"
#include "planner/model/config.h"

namespace fp {

enum class TensorClass : uint8_t {
  Matrix,  // used through dequantisation / matvec: any dequantisable dtype
  Vector,  // 1-D float parameter (norm weight, sink, HC base/scale, router bias): F32
  Index,   // ffn_gate_tid2eid: I32 expert ids
};

struct TensorSpec {
  std::string name;             // full GGUF name
  std::string role;             // name without layer prefix and .weight/.bias: "attn_q_b", "nextn.eh_proj"
  int32_t layer = -1;           // -1 global; n_layer = the MTP block
  uint32_t n_dims = 1;
  std::array<int64_t, 4> ne{1, 1, 1, 1};
  TensorClass cls = TensorClass::Matrix;
  bool optional = false;        // llama.cpp's optional nextn extras
  bool in_mtp_file = false;     // lives in the separate --mtp file
};

// Every tensor the config implies, in the order synth writes them: globals, the
// layers, then the MTP block (c.mtp says which layout).
std::vector<TensorSpec> expected_tensors(const ModelConfig& c);

// "[1024, 32768]" for the first n_dims entries.
std::string shape_str(const std::array<int64_t, 4>& ne, uint32_t n_dims);

// Whether `t` may store a tensor of class `cls` with row length ne0; when not,
// `why` says what was expected ("F32", "a dtype flashplan can dequantise", ...).
bool dtype_allowed(TensorClass cls, DType t, int64_t ne0, std::string* why = nullptr);

struct Validation {
  std::vector<std::string> errors;
  std::vector<std::string> warnings;
  bool ok() const { return errors.empty(); }
};

// Checks every expected tensor (presence, shape, dtype; tid2eid ids < n_expert when
// the file has data) and warns about tensors nothing reads. Never throws for a
// mismatch: errors are collected, each naming tensor, found, expected and file.
Validation check_model(const gguf::File& f, const ModelConfig& c, const gguf::File* mtp = nullptr);

// check_model, then throws fp::Error listing the errors (the first few and a count);
// returns the warnings.
std::vector<std::string> validate_model(const gguf::File& f, const ModelConfig& c, const gguf::File* mtp = nullptr);

}  // namespace fp
