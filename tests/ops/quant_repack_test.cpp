// The load-time IQ2_XXS row repack (ops/quant/repack.h), the CPU reference of the device
// repack (tests/gpu/matvec_gpu_test.cpp compares the two byte for byte): every block of the
// file layout must be recoverable from the repacked row, and odd shapes are refused.
#include <doctest/doctest.h>

#include <cstring>

#include "ops/core/error.h"
#include "ops/quant/dequant.h"
#include "ops/quant/repack.h"
#include "tests/ops/quant_testdata.h"

using namespace fp;

TEST_CASE("repack_iq2xxs_rows: scales after the runs, every block recoverable, same values") {
  std::mt19937_64 rng(20261207);
  const int64_t rows = 3, cols = 4096, nb = cols / 256, rb = 66 * nb;
  const std::vector<uint8_t> file = test::random_weights(DType::IQ2_XXS, rows * cols, rng);
  std::vector<uint8_t> packed = file;
  repack_iq2xxs_rows(packed.data(), rows, cols);
  CHECK(packed != file);
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* row = packed.data() + r * rb;
    // Rebuild block b from its scale (at 64 nb + 2 b) and its 8 runs (at 64 b), then
    // dequantise: the values must be the file's, bit for bit.
    std::vector<uint8_t> rebuilt(static_cast<size_t>(rb));
    for (int64_t b = 0; b < nb; ++b) {
      std::memcpy(rebuilt.data() + 66 * b, row + 64 * nb + 2 * b, 2);
      for (int j = 0; j < 8; ++j) std::memcpy(rebuilt.data() + 66 * b + 2 + 8 * j, row + 64 * b + 8 * j, 8);
    }
    std::vector<float> want(static_cast<size_t>(cols)), got(static_cast<size_t>(cols));
    dequantize_row(DType::IQ2_XXS, file.data() + r * rb, want.data(), cols);
    dequantize_row(DType::IQ2_XXS, rebuilt.data(), got.data(), cols);
    CHECK(std::memcmp(want.data(), got.data(), want.size() * 4) == 0);
  }
}

TEST_CASE("repack_iq2xxs_rows: columns that are not a multiple of 1024 are refused") {
  std::vector<uint8_t> buf(66 * 8);
  CHECK_THROWS_AS(repack_iq2xxs_rows(buf.data(), 1, 2048 + 256), fp::Error);
  CHECK_THROWS_AS(repack_iq2xxs_rows(buf.data(), 1, 0), fp::Error);
  CHECK_NOTHROW(repack_iq2xxs_rows(buf.data(), 0, 1024));
}
