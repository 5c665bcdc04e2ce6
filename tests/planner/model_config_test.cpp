// read_model_config: the HF oracle's tiny GGUF against the transformers config it was
// made from (oracle.json), and one refusal per rule of MODEL.md §2.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "model_test_util.h"
#include "ops/core/error.h"
#include "planner/model/config.h"

using namespace fp;
using fp::test::Metadata;

namespace {

nlohmann::json oracle_json() {
  std::ifstream in(std::string(FLASHPLAN_TEST_DATA) + "/hf/seed1/oracle.json");
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

// The tiny HF file with its metadata edited.
std::string edited(const std::string& name, const std::function<void(Metadata&)>& edit) {
  const std::string path = test::scratch(name + ".gguf");
  test::rewrite(test::hf_tiny_path(), path, {}, edit);
  return path;
}

std::string config_error(const std::string& path) {
  gguf::File f = gguf::File::open(path);
  try {
    read_model_config(f);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("model config: the HF oracle tiny GGUF reads as its transformers config") {
  const auto j = oracle_json();
  const auto& hf = j["tiny_config"];
  gguf::File f = gguf::File::open(test::hf_tiny_path());
  const ModelConfig c = read_model_config(f);
  CHECK(c.n_layer == hf["num_hidden_layers"].get<uint32_t>());
  CHECK(c.n_layer_all == c.n_layer);
  CHECK(c.n_embd == hf["hidden_size"].get<uint32_t>());
  CHECK(c.n_vocab == hf["vocab_size"].get<uint32_t>());
  CHECK(c.n_head == hf["num_attention_heads"].get<uint32_t>());
  CHECK(c.n_head_kv == hf["num_key_value_heads"].get<uint32_t>());
  CHECK(c.head_dim == hf["head_dim"].get<uint32_t>());
  CHECK(c.rope_dim == uint32_t(hf["head_dim"].get<double>() * hf["partial_rotary_factor"].get<double>()));
  CHECK(c.q_lora_rank == hf["q_lora_rank"].get<uint32_t>());
  CHECK(c.o_lora_rank == hf["o_lora_rank"].get<uint32_t>());
  CHECK(c.o_groups == hf["o_groups"].get<uint32_t>());
  CHECK(c.sliding_window == hf["sliding_window"].get<uint32_t>());
  CHECK(c.indexer_heads == hf["index_n_heads"].get<uint32_t>());
  CHECK(c.indexer_head_dim == hf["index_head_dim"].get<uint32_t>());
  CHECK(c.indexer_top_k == hf["index_topk"].get<uint32_t>());
  CHECK(c.n_expert == hf["n_routed_experts"].get<uint32_t>());
  CHECK(c.n_expert_used == hf["num_experts_per_tok"].get<uint32_t>());
  CHECK(c.n_expert_shared == hf["n_shared_experts"].get<uint32_t>());
  CHECK(c.expert_ff == hf["moe_intermediate_size"].get<uint32_t>());
  CHECK(c.expert_weights_scale == doctest::Approx(hf["routed_scaling_factor"].get<double>()));
  CHECK(c.expert_weights_norm == hf["norm_topk_prob"].get<bool>());
  CHECK(c.hc_count == hf["hc_mult"].get<uint32_t>());
  CHECK(c.hc_sinkhorn_iters == hf["hc_sinkhorn_iters"].get<uint32_t>());
  CHECK(c.hc_eps == doctest::Approx(hf["hc_eps"].get<double>()));
  CHECK(c.rms_eps == doctest::Approx(hf["rms_norm_eps"].get<double>()));
  CHECK(c.rope_freq_base == doctest::Approx(hf["rope_theta"].get<double>()));
  CHECK(c.compress_rope_freq_base == doctest::Approx(hf["compress_rope_theta"].get<double>()));
  const auto& rp = hf["rope_parameters"];
  CHECK(c.rope_scaling_factor == doctest::Approx(rp["factor"].get<double>()));
  CHECK(c.rope_orig_ctx == rp["original_max_position_embeddings"].get<uint32_t>());
  CHECK(c.yarn_beta_fast == doctest::Approx(rp["beta_fast"].get<double>()));
  CHECK(c.yarn_beta_slow == doctest::Approx(rp["beta_slow"].get<double>()));
  CHECK(c.context_length == hf["max_position_embeddings"].get<uint64_t>());
  CHECK(c.bos_id == hf["bos_token_id"].get<uint32_t>());
  CHECK(c.eos_id == hf["eos_token_id"].get<uint32_t>());
  CHECK(c.mtp == MtpLayout::None);

  // Layer kinds and routing from the HF layer type lists.
  const auto& types = hf["layer_types"];
  const auto& mlp = hf["mlp_layer_types"];
  REQUIRE(types.size() == c.n_layer);
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    const std::string t = types[l];
    const LayerKind want = t == "sliding_attention" ? LayerKind::SWA
                         : t == "compressed_sparse_attention" ? LayerKind::CSA : LayerKind::HCA;
    CHECK(c.layer_kind(l) == want);
    if (want != LayerKind::SWA) CHECK(c.compress_ratio(l) == hf["compress_rates"][t].get<uint32_t>());
    CHECK(c.hash_routed(l) == (mlp[l] == "hash_moe"));
    CHECK(c.swiglu_clamp_exp[l] == doctest::Approx(hf["swiglu_limit"].get<double>()));
    CHECK(c.swiglu_clamp_shexp[l] == doctest::Approx(hf["swiglu_limit"].get<double>()));
  }
  CHECK(c.layer_kind(c.n_layer) == LayerKind::SWA);  // the MTP slot
  CHECK_THROWS_AS(c.layer_kind(c.n_layer + 1), Error);
}

TEST_CASE("model config: optional keys take their documented defaults") {
  // swiglu_clamp_shexp absent -> swiglu_clamp_exp; expert_gating_func absent is fine.
  const auto path = edited("no_optional", [](Metadata& kv) {
    test::drop_kv(kv, "deepseek4.swiglu_clamp_shexp");
    test::drop_kv(kv, "deepseek4.expert_gating_func");
    test::set_kv(kv, "deepseek4.swiglu_clamp_exp", gguf::Value::make_array_f32({2, 3, 4, 5, 6, 7}));
    test::drop_kv(kv, "deepseek4.nextn_predict_layers");
  });
  gguf::File f = gguf::File::open(path);
  const ModelConfig c = read_model_config(f);
  CHECK(c.swiglu_clamp_shexp == std::vector<float>{2, 3, 4, 5, 6, 7});
  CHECK(c.mtp_swiglu_clamp_exp == 7);  // no stored MTP entry: the last layer's
  CHECK(c.nextn_predict_layers == 0);
}

TEST_CASE("model config: compress_ratios may be u32 and longer than block_count") {
  const auto path = edited("ratios_u32", [](Metadata& kv) {
    gguf::Value v;
    v.type = gguf::ValueType::ARRAY;
    v.item_type = gguf::ValueType::U32;
    v.arr_u = {0, 0, 4, 16, 4, 16, 0};  // a 7th (MTP) entry, as llama.cpp files carry
    test::set_kv(kv, "deepseek4.attention.compress_ratios", v);
  });
  gguf::File f = gguf::File::open(path);
  const ModelConfig c = read_model_config(f);
  CHECK(c.compress_ratios == std::vector<uint32_t>{0, 0, 4, 16, 4, 16});
}

TEST_CASE("model config: refusals name file, key, value and expectation") {
  struct Case {
    const char* name;
    std::function<void(Metadata&)> edit;
    const char* want;
  };
  const Case cases[] = {
      {"gating", [](Metadata& kv) { test::set_kv(kv, "deepseek4.expert_gating_func", gguf::Value::make_u32(2)); },
       "deepseek4.expert_gating_func: 2, expected 4"},
      {"short_ratios", [](Metadata& kv) { test::set_kv(kv, "deepseek4.attention.compress_ratios", gguf::Value::make_array_i32({0, 0, 4})); },
       "deepseek4.attention.compress_ratios: array[int32, 3], expected at least 6 entries"},
      {"negative_ratio", [](Metadata& kv) { test::set_kv(kv, "deepseek4.attention.compress_ratios", gguf::Value::make_array_i32({0, 0, -4, 16, 4, 16})); },
       "deepseek4.attention.compress_ratios[2]: -4, expected an integer in [0"},
      {"missing_key", [](Metadata& kv) { test::drop_kv(kv, "deepseek4.hash_layer_count"); },
       "deepseek4.hash_layer_count: missing"},
      {"arch", [](Metadata& kv) { test::set_kv(kv, "general.architecture", gguf::Value::make_string("deepseek-v4-flash")); },
       "general.architecture: \"deepseek-v4-flash\", expected \"deepseek4\""},
      {"kv_heads", [](Metadata& kv) { test::set_kv(kv, "deepseek4.attention.head_count_kv", gguf::Value::make_u32(2)); },
       "deepseek4.attention.head_count_kv: 2, expected 1"},
      {"value_len", [](Metadata& kv) { test::set_kv(kv, "deepseek4.attention.value_length", gguf::Value::make_u32(32)); },
       "deepseek4.attention.value_length: 32, expected 64"},
      {"groups", [](Metadata& kv) { test::set_kv(kv, "deepseek4.attention.output_group_count", gguf::Value::make_u32(3)); },
       "expected a divisor of head_count = 4"},
      {"expert_groups", [](Metadata& kv) { test::set_kv(kv, "deepseek4.expert_group_count", gguf::Value::make_u32(8)); },
       "deepseek4.expert_group_count: 8, expected 0"},
      {"clamp_short", [](Metadata& kv) { test::set_kv(kv, "deepseek4.swiglu_clamp_exp", gguf::Value::make_array_f32({10, 10})); },
       "deepseek4.swiglu_clamp_exp: array[float32, 2], expected at least 6 entries"},
      {"used_gt_experts", [](Metadata& kv) { test::set_kv(kv, "deepseek4.expert_used_count", gguf::Value::make_u32(9)); },
       "deepseek4.expert_used_count: 9 (uint32), expected an integer in [1, 8]"},
      {"eps_type", [](Metadata& kv) { test::set_kv(kv, "deepseek4.attention.layer_norm_rms_epsilon", gguf::Value::make_u32(1)); },
       "deepseek4.attention.layer_norm_rms_epsilon: 1 (uint32), expected a float"},
      {"yarn", [](Metadata& kv) { test::set_kv(kv, "deepseek4.rope.scaling.type", gguf::Value::make_string("linear")); },
       "deepseek4.rope.scaling.type: \"linear\", expected \"yarn\""},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    const auto path = edited(std::string("bad_") + c.name, c.edit);
    const std::string err = config_error(path);
    CHECK(err.find(c.want) != std::string::npos);
    CHECK(err.find(path) != std::string::npos);  // names the file
  }
}

TEST_CASE("model config: writer metadata reads back to the same config") {
  for (const char* preset : {"tiny", "full"}) {
    CAPTURE(preset);
    SynthConfig s = synth_preset(preset);
    const std::string path = test::synth_file(std::string("roundtrip_") + preset, s, true);
    gguf::OpenOptions o;
    o.allow_header_only = true;
    gguf::File f = gguf::File::open(path, o);
    const ModelConfig c = read_model_config(f);
    const ModelConfig& m = s.model;
    CHECK(c.n_layer == m.n_layer);
    CHECK(c.compress_ratios == m.compress_ratios);
    CHECK(c.swiglu_clamp_exp == m.swiglu_clamp_exp);
    CHECK(c.mtp == m.mtp);
    CHECK(c.n_vocab == m.n_vocab);
    CHECK(c.expert_ff == m.expert_ff);
    CHECK(c.indexer_top_k == m.indexer_top_k);
    CHECK(c.context_length == m.context_length);
    CHECK(c.hash_layer_count == m.hash_layer_count);
    CHECK(c.n_layer_all == m.n_layer + (m.mtp == MtpLayout::InFile ? 1 : 0));
  }
}
