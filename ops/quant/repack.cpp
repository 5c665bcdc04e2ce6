#include "ops/quant/repack.h"

#include <cstring>
#include <vector>

#include "ops/core/error.h"

namespace fp {

const char* weight_layout_name(WeightLayout l) { return l == WeightLayout::iq2xxs_rows ? "iq2xxs_rows" : "gguf"; }

void repack_iq2xxs_rows(uint8_t* data, int64_t rows, int64_t cols) {
  if (rows < 0 || cols <= 0 || cols % 1024 != 0)
    fail("repack_iq2xxs_rows: shape [", rows, ", ", cols, "], expected a multiple of 1024 columns");
  const int64_t nb = cols / 256, rb = 66 * nb;
  std::vector<uint8_t> row(static_cast<size_t>(rb));
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* dst = data + r * rb;
    std::memcpy(row.data(), dst, size_t(rb));
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* blk = row.data() + 66 * b;
      std::memcpy(dst + 64 * b, blk + 2, 64);          // the block's 8 runs, in order
      std::memcpy(dst + 64 * nb + 2 * b, blk, 2);      // its scale, after all runs
    }
  }
}

}  // namespace fp
