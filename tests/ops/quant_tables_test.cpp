// The generated IQ tables (ops/quant/iq_tables.cpp) against the copied reference tables
// (tests/data/quant/tables/*.txt, whose sha256 are in SHA256SUMS beside them; the live
// gguf-py test re-checks those hashes), entry by entry.
#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <vector>

#include "ops/quant/iq_tables.h"

namespace {

std::vector<uint64_t> read_table(const std::string& name) {
  std::ifstream f(std::string(FLASHPLAN_TEST_DATA) + "/quant/tables/" + name);
  REQUIRE(f.good());
  std::vector<uint64_t> v;
  std::string line;
  while (std::getline(f, line)) v.push_back(std::stoull(line, nullptr, 16));
  return v;
}

template <typename T, size_t N>
void check_table(const T (&table)[N], const std::string& file) {
  INFO(file);
  const auto want = read_table(file);
  REQUIRE(want.size() == N);
  for (size_t i = 0; i < N; ++i) CHECK(uint64_t(table[i]) == want[i]);
}

}  // namespace

TEST_CASE("IQ tables match the reference tables entry by entry") {
  check_table(fp::iq::kIq2xxsGrid, "iq2xxs_grid.txt");
  check_table(fp::iq::kIq2xsGrid, "iq2xs_grid.txt");
  check_table(fp::iq::kIq3xxsGrid, "iq3xxs_grid.txt");
  check_table(fp::iq::kSignsIq2xs, "ksigns_iq2xs.txt");
  check_table(fp::iq::kMaskIq2xs, "kmask_iq2xs.txt");
}

TEST_CASE("ksigns is the 7-bit index with an even-parity eighth bit") {
  for (int i = 0; i < 128; ++i) {
    const int want = i | (__builtin_popcount(unsigned(i)) % 2 ? 0x80 : 0);
    CHECK(int(fp::iq::kSignsIq2xs[i]) == want);
  }
}
