// Constant tables of the IQ2_XXS, IQ2_XS and IQ3_XXS formats (GGUF.md §11-12).
// A grid entry's byte j, (entry >> 8j) & 255, is the magnitude of output j of its run;
// ksigns maps a 7-bit sign index to 8 sign bits (bit 7 = parity of the other seven).
#pragma once
#include <cstdint>

namespace fp::iq {

extern const uint64_t kIq2xxsGrid[256];
extern const uint64_t kIq2xsGrid[512];
extern const uint32_t kIq3xxsGrid[256];
extern const uint8_t kSignsIq2xs[128];
extern const uint8_t kMaskIq2xs[8];

}  // namespace fp::iq
