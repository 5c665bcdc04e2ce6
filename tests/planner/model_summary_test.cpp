// summarize_model: per-token read volume counted from the tensor table, and a broken
// model summarised (errors listed) rather than thrown.
#include <doctest/doctest.h>

#include "model_test_util.h"
#include "planner/model/summary.h"

using namespace fp;

TEST_CASE("summary: tiny synth model, counted tensor by tensor") {
  const std::string path = test::synth_file("summary_tiny", synth_preset("tiny"));
  gguf::File f = gguf::File::open(path);
  const ModelSummary s = summarize_model(f);
  REQUIRE(s.config);
  CHECK(s.errors.empty());
  const ModelConfig& c = *s.config;
  uint64_t params = 0, bytes = 0, trunk = 0, mtp = 0;
  const std::string mtp_prefix = "blk." + std::to_string(c.n_layer) + ".";
  for (const auto& t : f.tensors()) {
    params += uint64_t(t.n_elements());
    bytes += t.n_bytes;
    uint64_t b = t.n_bytes;
    if (t.name.find("_exps.") != std::string::npos) b = b / c.n_expert * c.n_expert_used;
    if (t.name == "token_embd.weight") b = t.n_bytes / uint64_t(t.ne[1]);
    if (t.name.find("tid2eid") != std::string::npos) b = t.n_bytes / uint64_t(t.ne[1]);
    (t.name.rfind(mtp_prefix, 0) == 0 ? mtp : trunk) += b;
  }
  CHECK(s.n_params == params);
  CHECK(s.tensor_bytes == bytes);
  CHECK(s.decode_bytes_per_token == trunk);
  // A draft also reads one embedding row and the whole head it shares with the trunk.
  const auto& e = f.require_tensor("token_embd.weight");
  CHECK(s.mtp_bytes_per_token == mtp + e.n_bytes / uint64_t(e.ne[1]) + f.require_tensor("output.weight").n_bytes);
  const std::string text = summary_text(s);
  CHECK(text.find("layers           6 (SWA 2, CSA 2, HCA 2), hash-routed 3") != std::string::npos);
  CHECK(summary_json(s)["valid"] == true);
}

TEST_CASE("summary: a broken model lists its errors instead of throwing") {
  const std::string path = test::scratch("summary_broken.gguf");
  test::rewrite(test::synth_file("summary_tiny", synth_preset("tiny")), path, [](auto& ts) {
    for (auto& t : ts)
      if (t.name == "blk.1.attn_kv.weight") t.ne = {64, 32};
  });
  gguf::File f = gguf::File::open(path);
  const ModelSummary s = summarize_model(f);
  REQUIRE(s.errors.size() == 1);
  CHECK(s.errors[0].find("blk.1.attn_kv.weight: shape [64, 32], expected [64, 64]") == 0);
  CHECK(summary_text(s).find("validation       1 error(s)") != std::string::npos);
  CHECK(summary_json(s)["valid"] == false);

  const std::string bad_meta = test::scratch("summary_bad_meta.gguf");
  test::rewrite(path, bad_meta, {}, [](test::Metadata& kv) { test::drop_kv(kv, "deepseek4.block_count"); });
  gguf::File g = gguf::File::open(bad_meta);
  const ModelSummary t = summarize_model(g);
  CHECK_FALSE(t.config);
  REQUIRE(t.errors.size() == 1);
  CHECK(t.errors[0].find("deepseek4.block_count: missing") == 0);
  CHECK(t.n_params == s.n_params);
}
