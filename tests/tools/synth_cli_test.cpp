// `flashplan synth` and the model section of `flashplan inspect`, run as the built
// binary: overrides reach the file, the separate MTP layout writes two files, the
// summary's numbers for the full preset, and error exits with one line on stderr.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/support/cli.h"

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

using fp::test::Run;
using fp::test::TempDir;
using fp::test::slurp;
// Output is captured in its own scratch directory; `dir` stays the caller's workspace.
Run flashplan(const TempDir&, const std::vector<std::string>& args) { return fp::test::run_flashplan(args); }

json inspect_model(const TempDir& dir, const std::string& path) {
  const Run r = flashplan(dir, {"inspect", "--json", path});
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json j = json::parse(r.out);
  REQUIRE(j.contains("model"));
  return j["model"];
}

}  // namespace

TEST_CASE("synth CLI: overrides reach the file and inspect reports them") {
  TempDir dir;
  const std::string out = dir / "small.gguf";
  const Run r = flashplan(dir, {"synth", "--preset", "tiny", "--layers", "4", "--experts", "6", "--experts-used", "2",
                                "--hidden", "128", "--hca-ratio", "8", "--seed", "3", "--type", "attn_q_b=F32", "-o", out});
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("wrote " + out) == 0);
  const json m = inspect_model(dir, out);
  CHECK(m["valid"] == true);
  CHECK(m["config"]["n_layer"] == 4);
  CHECK(m["config"]["n_embd"] == 128);
  CHECK(m["config"]["n_expert"] == 6);
  CHECK(m["config"]["n_expert_used"] == 2);
  CHECK(m["config"]["compress_ratios"] == json::array({0, 0, 4, 8}));
  CHECK(m["config"]["mtp"] == "in-file");

  const Run t = flashplan(dir, {"inspect", out});
  CHECK(t.status == 0);
  CHECK(t.out.find("DS4 model") != std::string::npos);
  CHECK(t.out.find("validation       ok") != std::string::npos);
}

TEST_CASE("synth CLI: separate MTP layout writes the mtp.0.* file beside the model") {
  TempDir dir;
  const Run r = flashplan(dir, {"synth", "--mtp", "separate", "-o", dir / "m.gguf"});
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(fs::exists(dir / "m-mtp.gguf"));
  const json m = inspect_model(dir, dir / "m.gguf");
  CHECK(m["config"]["mtp"] == "none");  // inspect sees the main file alone
  CHECK(m["mtp_bytes_per_token"] == 0);
}

TEST_CASE("synth CLI: the full preset's summary (header only)") {
  TempDir dir;
  const Run r = flashplan(dir, {"synth", "--preset", "full", "--header-only", "-o", dir / "full.gguf"});
  INFO(r.err);
  REQUIRE(r.status == 0);
  const json m = inspect_model(dir, dir / "full.gguf");
  CHECK(m["valid"] == true);
  // MODEL.md §1/§3.3: 284.33 B parameters; IQ2_XXS 86 tensors / 44.344 GiB, Q2_K 43 / 28.219 GiB.
  CHECK(m["n_params"].get<double>() / 1e9 == doctest::Approx(284.33).epsilon(1e-4));
  CHECK(m["tensor_bytes"] == 86714775900ull);
  CHECK(m["bytes_by_dtype"]["IQ2_XXS"]["tensors"] == 86);
  CHECK(m["bytes_by_dtype"]["IQ2_XXS"]["bytes"].get<double>() / (1ull << 30) == doctest::Approx(44.344).epsilon(1e-4));
  CHECK(m["bytes_by_dtype"]["Q2_K"]["tensors"] == 43);
  CHECK(m["bytes_by_dtype"]["Q8_0"]["tensors"] == 345);
  // Per decoded token: all non-routed tensors once (minus the full embedding and
  // tid2eid tables: one row each) plus 6/256 of every routed expert tensor.
  const uint64_t experts = 43ull * (2 * 553648128ull + 704643072ull);
  const uint64_t tid2eid = 3ull * 3102720ull, embd = 1059061760ull;
  const uint64_t want = 86714775900ull - experts - tid2eid - embd + experts / 256 * 6 + 3 * 6 * 4 + 4096 * 2;
  CHECK(m["decode_bytes_per_token"] == want);
}

TEST_CASE("synth CLI: errors exit non-zero with one line on stderr") {
  TempDir dir;
  struct Case { std::vector<std::string> args; const char* want; };
  const Case cases[] = {
      {{"synth", "--type", "ffn_down_exps=Q2_K", "-o", dir / "x.gguf"}, "blk.0.ffn_down_exps.weight: dtype Q2_K"},
      {{"synth", "--type", "bogus=F16", "-o", dir / "x.gguf"}, "unknown tensor role bogus"},
      {{"synth", "--heads", "3", "-o", dir / "x.gguf"}, "multiple of output groups"},
      {{"synth", "--layers", "4", "--ratios", "0,4", "-o", dir / "x.gguf"}, "--ratios: 2 entries"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.want);
    const Run r = flashplan(dir, c.args);
    CHECK(r.status == 1);
    CHECK(r.err.find(c.want) != std::string::npos);
    CHECK(r.err.find('\n') == r.err.size() - 1);
    CHECK_FALSE(fs::exists(dir / "x.gguf"));
  }
}
