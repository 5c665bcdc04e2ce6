// The ggml type table (GGUF.md §9; sizes from ggml_type_size / ggml_blck_size).
#include "ops/quant/types.h"

#include <array>

#include "ops/core/error.h"

namespace fp {
namespace {

constexpr TypeTraits kTypes[] = {
    {DType::F32, "F32", 1, 4, true},          {DType::F16, "F16", 1, 2, true},
    {DType::Q4_0, "Q4_0", 32, 18, true},      {DType::Q4_1, "Q4_1", 32, 20, false},
    {DType::Q5_0, "Q5_0", 32, 22, false},     {DType::Q5_1, "Q5_1", 32, 24, false},
    {DType::Q8_0, "Q8_0", 32, 34, true},      {DType::Q8_1, "Q8_1", 32, 36, false},
    {DType::Q2_K, "Q2_K", 256, 84, true},     {DType::Q3_K, "Q3_K", 256, 110, false},
    {DType::Q4_K, "Q4_K", 256, 144, true},    {DType::Q5_K, "Q5_K", 256, 176, true},
    {DType::Q6_K, "Q6_K", 256, 210, true},    {DType::Q8_K, "Q8_K", 256, 292, true},
    {DType::IQ2_XXS, "IQ2_XXS", 256, 66, true}, {DType::IQ2_XS, "IQ2_XS", 256, 74, true},
    {DType::IQ3_XXS, "IQ3_XXS", 256, 98, true}, {DType::IQ1_S, "IQ1_S", 256, 50, false},
    {DType::IQ4_NL, "IQ4_NL", 32, 18, false}, {DType::IQ3_S, "IQ3_S", 256, 110, false},
    {DType::IQ2_S, "IQ2_S", 256, 82, false},  {DType::IQ4_XS, "IQ4_XS", 256, 136, false},
    {DType::I8, "I8", 1, 1, false},           {DType::I16, "I16", 1, 2, false},
    {DType::I32, "I32", 1, 4, false},         {DType::I64, "I64", 1, 8, false},
    {DType::F64, "F64", 1, 8, false},         {DType::IQ1_M, "IQ1_M", 256, 56, false},
    {DType::BF16, "BF16", 1, 2, true},        {DType::TQ1_0, "TQ1_0", 256, 54, false},
    {DType::TQ2_0, "TQ2_0", 256, 66, false},  {DType::MXFP4, "MXFP4", 32, 17, false},
    {DType::NVFP4, "NVFP4", 64, 36, false},   {DType::Q1_0, "Q1_0", 128, 18, false},
    {DType::Q2_0, "Q2_0", 64, 18, false},
};

}  // namespace

std::optional<TypeTraits> type_traits(uint32_t id) {
  for (const auto& t : kTypes)
    if (uint32_t(t.type) == id) return t;
  return std::nullopt;
}

const TypeTraits& traits(DType t) {
  for (const auto& e : kTypes)
    if (e.type == t) return e;
  fail("internal: dtype id ", uint32_t(t), " is not in the type table");
}

const char* dtype_name(DType t) { return traits(t).name; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& t : kTypes)
    if (name == t.name) return t.type;
  return std::nullopt;
}

}  // namespace fp
