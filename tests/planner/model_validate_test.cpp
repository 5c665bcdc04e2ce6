// Tensor-table validation and role binding: the HF oracle's tensor list (made by
// transformers, not by this code) against expected_tensors(); one broken file per
// kind of mismatch, written with the real GGUF writer; both MTP layouts.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>

#include "model_test_util.h"
#include "ops/core/error.h"
#include "planner/model/model.h"
#include "planner/model/tensors.h"

using namespace fp;
using fp::test::TensorEntry;

namespace {

SynthConfig tiny(MtpLayout mtp) {
  SynthConfig s = synth_preset("tiny");
  s.model.mtp = mtp;
  return s;
}

std::string tiny_file() { return test::synth_file("validate_tiny", tiny(MtpLayout::InFile)); }

// Validation errors of `src` rewritten with `edit` applied to its tensor table.
Validation broken(const std::string& name, const std::function<void(std::vector<TensorEntry>&)>& edit) {
  const std::string path = test::scratch(name + ".gguf");
  test::rewrite(tiny_file(), path, edit);
  gguf::File f = gguf::File::open(path);
  return check_model(f, read_model_config(f));
}

TensorEntry& find(std::vector<TensorEntry>& ts, const std::string& name) {
  for (auto& t : ts)
    if (t.name == name) return t;
  FAIL("no tensor ", name);
  return ts[0];
}


}  // namespace

TEST_CASE("tensor table: expected_tensors equals the HF oracle's tensor list") {
  std::ifstream in(std::string(FLASHPLAN_TEST_DATA) + "/hf/seed1/oracle.json");
  REQUIRE(in.good());
  const auto j = nlohmann::json::parse(in);
  std::map<std::string, std::vector<int64_t>> hf;
  for (const auto& t : j["gguf"]["tensors"]) hf[t["name"]] = t["ne"].get<std::vector<int64_t>>();

  gguf::File f = gguf::File::open(test::hf_tiny_path());
  const ModelConfig c = read_model_config(f);
  std::map<std::string, std::vector<int64_t>> ours;
  for (const auto& s : expected_tensors(c)) ours[s.name] = std::vector<int64_t>(s.ne.begin(), s.ne.begin() + s.n_dims);
  CHECK(ours == hf);

  const Validation v = check_model(f, c);
  CHECK(v.errors.empty());
  CHECK(v.warnings.empty());
}

TEST_CASE("tensor table: the HF tiny model opens; without MTP tensors MTP is unavailable, said once") {
  Model m = Model::open(test::hf_tiny_path());
  CHECK_FALSE(m.mtp_available());
  CHECK(m.mtp_notice().find("MTP speculative decoding is unavailable") != std::string::npos);
  CHECK_THROWS_AS(m.mtp(), Error);
  CHECK(m.globals().token_embd.name() == "token_embd.weight");
  CHECK(m.layer(5).ffn_down_shexp.name() == "blk.5.ffn_down_shexp.weight");
}

TEST_CASE("validation: a wrong shape names tensor, found, expected and file") {
  const Validation v = broken("bad_shape", [](auto& ts) { find(ts, "blk.2.attn_q_b.weight").ne = {32, 512}; });
  REQUIRE(v.errors.size() == 1);
  CHECK(v.errors[0] == "blk.2.attn_q_b.weight: shape [32, 512], expected [32, 256] (" + test::scratch("bad_shape.gguf") + ")");
}

TEST_CASE("validation: dtypes are checked per class") {
  SUBCASE("a norm must be F32") {
    const Validation v = broken("bad_norm", [](auto& ts) { find(ts, "blk.0.attn_norm.weight").type = DType::F16; });
    REQUIRE(v.errors.size() == 1);
    CHECK(v.errors[0].find("blk.0.attn_norm.weight: dtype F16, expected F32 (") == 0);
  }
  SUBCASE("tid2eid must be I32") {
    const Validation v = broken("bad_tid", [](auto& ts) { find(ts, "blk.1.ffn_gate_tid2eid.weight").type = DType::F32; });
    REQUIRE(v.errors.size() == 1);
    CHECK(v.errors[0].find("blk.1.ffn_gate_tid2eid.weight: dtype F32, expected I32") == 0);
  }
  SUBCASE("a matrix needs a dequantisable type") {
    const Validation v = broken("bad_matrix", [](auto& ts) { find(ts, "blk.3.attn_kv.weight").type = DType::Q4_1; });
    REQUIRE(v.errors.size() == 1);
    CHECK(v.errors[0].find("blk.3.attn_kv.weight: dtype Q4_1, expected a dtype flashplan can dequantise") == 0);
  }
  SUBCASE("any dequantisable matrix type is accepted (llama.cpp/unsloth mixes)") {
    const Validation v = broken("ok_matrix", [](auto& ts) {
      find(ts, "blk.3.attn_kv.weight").type = DType::F32;
      find(ts, "blk.3.attn_q_a.weight").type = DType::BF16;
      find(ts, "output.weight").type = DType::Q4_0;
    });
    CHECK(v.errors.empty());
  }
}

TEST_CASE("validation: missing tensors, bad expert ids, and unused tensors") {
  SUBCASE("missing") {
    const Validation v = broken("missing", [](auto& ts) {
      std::erase_if(ts, [](auto& t) { return t.name == "blk.4.indexer.proj.weight"; });
    });
    REQUIRE(v.errors.size() == 1);
    CHECK(v.errors[0].find("blk.4.indexer.proj.weight: missing, expected shape [64, 16]") == 0);
  }
  SUBCASE("unused tensor: a warning, not an error") {
    const Validation v = broken("extra", [](auto& ts) { ts.push_back({"blk.0.something_new.weight", DType::F32, {8}}); });
    CHECK(v.errors.empty());
    REQUIRE(v.warnings.size() == 1);
    CHECK(v.warnings[0].find("blk.0.something_new.weight") != std::string::npos);
  }
  SUBCASE("expert id out of range") {
    // Rewrite tid2eid of layer 0 with an id == n_expert.
    const std::string path = test::scratch("bad_ids.gguf");
    test::rewrite(tiny_file(), path, {});
    {
      gguf::File f = gguf::File::open(path);
      const auto& t = f.require_tensor("blk.0.ffn_gate_tid2eid.weight");
      const uint64_t off = t.file_offset + 4 * (t.ne[0] * 17 + 1);  // token 17, slot 1
      std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
      io.seekp(std::streamoff(off));
      const int32_t bad = 8;
      io.write(reinterpret_cast<const char*>(&bad), 4);
    }
    gguf::File f = gguf::File::open(path);
    const Validation v = check_model(f, read_model_config(f));
    REQUIRE(v.errors.size() == 1);
    CHECK(v.errors[0].find("blk.0.ffn_gate_tid2eid.weight: token 17 routes to expert 8, expected an id in [0, 8)") == 0);
  }
  SUBCASE("validate_model throws with every error listed") {
    const std::string path = test::scratch("two_errors.gguf");
    test::rewrite(tiny_file(), path, [](auto& ts) {
      find(ts, "blk.0.attn_norm.weight").type = DType::F16;
      find(ts, "blk.1.attn_norm.weight").ne = {65};
    });
    gguf::File f = gguf::File::open(path);
    try {
      validate_model(f, read_model_config(f));
      FAIL("validate_model accepted a broken file");
    } catch (const Error& e) {
      const std::string msg = e.what();
      CHECK(msg.find("blk.0.attn_norm.weight: dtype F16") != std::string::npos);
      CHECK(msg.find("blk.1.attn_norm.weight: shape [65], expected [64]") != std::string::npos);
    }
  }
}

TEST_CASE("model: every layer kind binds exactly the tensors it has") {
  Model m = Model::open(tiny_file());
  const ModelConfig& c = m.config();
  REQUIRE(c.n_layer == 6);
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    CAPTURE(l);
    const LayerTensors& t = m.layer(l);
    const LayerKind k = c.layer_kind(l);
    CHECK(bool(t.attn_q_b));
    CHECK(bool(t.ffn_down_exps));
    CHECK(bool(t.hc_ffn_base));
    CHECK(bool(t.attn_compressor_kv) == (k != LayerKind::SWA));
    CHECK(bool(t.attn_compressor_norm) == (k != LayerKind::SWA));
    CHECK(bool(t.indexer_attn_q_b) == (k == LayerKind::CSA));
    CHECK(bool(t.indexer_compressor_ape) == (k == LayerKind::CSA));
    CHECK(bool(t.ffn_gate_tid2eid) == c.hash_routed(l));
    CHECK(bool(t.exp_probs_b) == !c.hash_routed(l));
    // Every bound tensor carries its layer's name.
    CHECK(t.attn_kv.name() == "blk." + std::to_string(l) + ".attn_kv.weight");
  }
  CHECK(m.layer(2).attn_compressor_ape.ne(0) == 2 * 64);  // CSA: two overlapping slots
  CHECK(m.layer(3).attn_compressor_ape.ne(0) == 64);      // HCA: one
  CHECK(m.layer(3).attn_compressor_ape.ne(1) == 16);      // one row per position in the window
  CHECK_THROWS_AS(m.layer(6), Error);
}

TEST_CASE("model: llama.cpp in-file MTP (blk.N.* + nextn.eh_proj)") {
  Model m = Model::open(tiny_file());
  const ModelConfig& c = m.config();
  CHECK(c.mtp == MtpLayout::InFile);
  CHECK(c.n_layer_all == 7);
  CHECK(c.n_layer == 6);
  REQUIRE(m.mtp_available());
  CHECK(m.mtp_notice().empty());
  const MtpTensors& t = m.mtp();
  CHECK(t.eh_proj.name() == "blk.6.nextn.eh_proj.weight");
  CHECK(t.eh_proj.ne(0) == 128);
  CHECK(t.eh_proj.ne(1) == 64);
  CHECK_FALSE(t.e_proj);
  CHECK(t.enorm.name() == "blk.6.nextn.enorm.weight");
  CHECK(t.layer.attn_q_b.name() == "blk.6.attn_q_b.weight");
  CHECK(bool(t.layer.exp_probs_b));      // top-k routed
  CHECK_FALSE(t.layer.ffn_gate_tid2eid);  // never hash-routed
  CHECK_FALSE(t.layer.attn_compressor_kv);
  // No own HC head, final norm, embedding or head in this file: the trunk's.
  CHECK(t.hc_head_fn.name() == "output_hc_fn.weight");
  CHECK(t.norm.name() == "output_norm.weight");
  CHECK(t.embed.name() == "token_embd.weight");
  CHECK(t.head.name() == "output.weight");
}

TEST_CASE("model: antirez separate MTP file (mtp.0.*, given with --mtp)") {
  SynthConfig s = tiny(MtpLayout::Separate);
  const std::string main_path = test::scratch("sep.gguf"), mtp_path = test::scratch("sep-mtp.gguf");
  SynthWriteOptions o;
  o.path = main_path;
  const SynthResult r = write_synth(s, o);
  CHECK(r.mtp_path == mtp_path);

  SUBCASE("with --mtp") {
    ModelOpenOptions mo;
    mo.mtp_path = mtp_path;
    Model m = Model::open(main_path, mo);
    CHECK(m.config().mtp == MtpLayout::Separate);
    CHECK(m.config().n_layer == 6);
    REQUIRE(m.mtp_available());
    const MtpTensors& t = m.mtp();
    CHECK(t.e_proj.name() == "mtp.0.e_proj.weight");
    CHECK(t.h_proj.name() == "mtp.0.h_proj.weight");
    CHECK(t.e_proj.file == m.mtp_file());
    CHECK_FALSE(t.eh_proj);
    CHECK(t.hc_head_fn.name() == "mtp.0.hc_head_fn.weight");
    CHECK(t.norm.name() == "mtp.0.norm.weight");
    CHECK(t.layer.ffn_up_exps.name() == "mtp.0.ffn_up_exps.weight");
    CHECK(t.layer.ffn_up_exps.file == m.mtp_file());
    CHECK(t.embed.file == &m.file());
    CHECK(t.layer.ffn_up_exps.bytes().size() == t.layer.ffn_up_exps.info->n_bytes);
  }
  SUBCASE("without --mtp: loads, MTP unavailable") {
    Model m = Model::open(main_path);
    CHECK_FALSE(m.mtp_available());
    CHECK_FALSE(m.mtp_notice().empty());
  }
  SUBCASE("--mtp given a file without mtp.0.* tensors") {
    ModelOpenOptions mo;
    mo.mtp_path = main_path;
    CHECK_THROWS_WITH_AS(Model::open(main_path, mo), doctest::Contains("mtp.0.e_proj.weight: missing"), Error);
  }
  SUBCASE("--mtp next to an in-file MTP block is refused") {
    ModelOpenOptions mo;
    mo.mtp_path = mtp_path;
    CHECK_THROWS_WITH_AS(Model::open(tiny_file(), mo), doctest::Contains("expected one MTP source"), Error);
  }
  SUBCASE("a broken MTP file names the MTP file") {
    const std::string bad = test::scratch("sep-mtp-bad.gguf");
    test::rewrite(mtp_path, bad, [](auto& ts) { find(ts, "mtp.0.h_proj.weight").ne = {64, 32}; });
    ModelOpenOptions mo;
    mo.mtp_path = bad;
    const std::string want = "mtp.0.h_proj.weight: shape [64, 32], expected [64, 64] (" + bad + ")";
    CHECK_THROWS_WITH_AS(Model::open(main_path, mo), doctest::Contains(want.c_str()), Error);
  }
}

TEST_CASE("model: nextn_predict_layers without eh_proj means no MTP (llama.cpp's rule)") {
  // An antirez-style main file: block_count = n_layer, nextn_predict_layers = 1, no nextn tensors.
  const std::string path = test::scratch("nextn_no_tensors.gguf");
  test::rewrite(test::synth_file("validate_none", tiny(MtpLayout::None)), path, {},
                [](test::Metadata& kv) { test::set_kv(kv, "deepseek4.nextn_predict_layers", gguf::Value::make_u32(1)); });
  Model m = Model::open(path);
  CHECK(m.config().n_layer == 6);
  CHECK(m.config().mtp == MtpLayout::None);
  CHECK_FALSE(m.mtp_available());
}
