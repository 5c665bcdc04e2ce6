// builtin_model_path: generated once into the cache, reused, regenerated when the
// cached file is damaged. The cache location is pointed at a scratch directory.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "model_test_util.h"
#include "planner/model/builtin.h"
#include "planner/model/model.h"

using namespace fp;
namespace fs = std::filesystem;

TEST_CASE("built-in model: generated once, reused, regenerated when damaged") {
  const std::string cache = test::scratch("xdg");
  const char* old = std::getenv("XDG_CACHE_HOME");
  const std::string saved = old ? old : "";
  setenv("XDG_CACHE_HOME", cache.c_str(), 1);

  const std::string path = builtin_model_path();
  CHECK(path.rfind(cache + "/flashplan/tiny-v", 0) == 0);
  REQUIRE(fs::exists(path));
  const auto t0 = fs::last_write_time(path);
  CHECK(builtin_model_path() == path);
  CHECK(fs::last_write_time(path) == t0);  // reused, not rewritten

  Model m = Model::open(path);
  CHECK(m.config().n_layer == 6);
  CHECK(m.mtp_available());
  // The cached file is exactly what synth writes for the tiny preset and seed 1.
  SynthConfig s = synth_preset("tiny");
  s.seed = kBuiltinSeed;
  const std::string ref = test::synth_file("builtin_ref", s);
  auto slurp = [](const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  CHECK(slurp(path) == slurp(ref));

  // A truncated cache file is replaced.
  fs::resize_file(path, 1000);
  CHECK(builtin_model_path() == path);
  CHECK(fs::file_size(path) == fs::file_size(ref));
  for (const auto& e : fs::directory_iterator(cache + "/flashplan"))
    CHECK(e.path().string() == path);  // no temporary left behind

  if (old) setenv("XDG_CACHE_HOME", saved.c_str(), 1);
  else unsetenv("XDG_CACHE_HOME");
}
