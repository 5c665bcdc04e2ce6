// ggml tensor types as stored in GGUF files (GGUF.md §9): ids, block sizes, bytes
// per block. The table is the single source of truth for sizes everywhere.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fp {

enum class DType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21,
  IQ2_S = 22, IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28,
  IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39, NVFP4 = 40,
  Q1_0 = 41, Q2_0 = 42,
};

struct TypeTraits {
  DType type;
  const char* name;    // ggml's name: "Q4_K", "IQ2_XXS", "F32"
  int64_t block;       // elements per block
  int64_t bytes;       // bytes per block
  bool dequant;        // flashplan can dequantise it to f32
};

// Traits of a type id read from a file; nullopt for unknown or removed ids (4, 5,
// 31-33, 36-38, >= 43). Sizes are known for every listed type, even the ones
// flashplan cannot dequantise, so a reader can still lay the file out.
std::optional<TypeTraits> type_traits(uint32_t id);
const TypeTraits& traits(DType t);  // for a DType that is in the table
const char* dtype_name(DType t);
std::optional<DType> dtype_from_name(std::string_view name);

// Bytes of a row of ne0 elements; ne0 must be a multiple of the block size.
inline int64_t row_bytes(DType t, int64_t ne0) { return ne0 / traits(t).block * traits(t).bytes; }

}  // namespace fp
