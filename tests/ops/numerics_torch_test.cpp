// FP8 E4M3FN rounding against torch's own float8_e4m3fn cast (tests/data/numerics, made
// on the GPU machine with torch 2.11 by make_torch_vectors.py). Every element must match
// bit for bit: ties, neighbours of ties, subnormals and signed zeros are all in the set.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "ops/numerics/numerics.h"

namespace {

std::vector<float> read_f32(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  REQUIRE_MESSAGE(f.good(), "cannot open " << path);
  const auto n = size_t(f.tellg());
  REQUIRE(n % 4 == 0);
  std::vector<float> v(n / 4);
  f.seekg(0);
  f.read(reinterpret_cast<char*>(v.data()), std::streamsize(n));
  return v;
}

uint32_t bits(float x) { uint32_t u; std::memcpy(&u, &x, 4); return u; }

}  // namespace

TEST_CASE("fp8 e4m3fn rounding matches torch.float8_e4m3fn bit for bit") {
  const std::string dir = std::string(FLASHPLAN_TEST_DATA) + "/numerics/";
  const auto in = read_f32(dir + "fp8_e4m3fn.in.f32");
  const auto out = read_f32(dir + "fp8_e4m3fn.out.f32");
  REQUIRE(in.size() == out.size());
  REQUIRE(in.size() > 1000);
  size_t bad = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const float got = fp::ref::fp8_e4m3_round(in[i]);
    if (bits(got) != bits(out[i])) {
      if (++bad <= 5) MESSAGE("x=" << in[i] << " got " << got << " torch " << out[i]);
    }
    const float via_code = fp::ref::fp8_e4m3_decode(fp::ref::fp8_e4m3_encode(in[i]));
    if (bits(via_code) != bits(out[i]) && ++bad <= 5)
      MESSAGE("encode/decode x=" << in[i] << " got " << via_code << " torch " << out[i]);
  }
  CHECK(bad == 0);
}
