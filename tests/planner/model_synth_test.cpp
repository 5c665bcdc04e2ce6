// synth: the full preset's table against TENSORS.tsv (the real q2 file's table), the
// tiny preset validates, byte-identical output per seed whatever the thread count, the
// dequantised statistics of every weight format synth builds, and the vocabulary.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "model_test_util.h"
#include "ops/core/error.h"
#include "ops/core/half.h"
#include "ops/core/parallel.h"
#include "ops/quant/dequant.h"
#include "planner/model/model.h"
#include "planner/model/tensors.h"

using namespace fp;

namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

}  // namespace

TEST_CASE("synth full preset: tensor table equals TENSORS.tsv") {
  struct Row { int64_t ne0, ne1, ne2; std::string dtype; uint64_t bytes; };
  std::map<std::string, Row> tsv;
  std::vector<std::string> tsv_order;
  uint64_t tsv_total = 0;
  {
    std::ifstream in(std::string(FLASHPLAN_TEST_DATA) + "/model/TENSORS.tsv");
    REQUIRE(in.good());
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#' || line.rfind("name\t", 0) == 0) {
        if (line.rfind("# TOTAL\t", 0) == 0) tsv_total = std::stoull(line.substr(line.rfind('\t') + 1));
        continue;
      }
      std::istringstream is(line);
      std::string name;
      Row r;
      is >> name >> r.ne0 >> r.ne1 >> r.ne2 >> r.dtype >> r.bytes;
      tsv[name] = r;
      tsv_order.push_back(name);
    }
  }
  REQUIRE(tsv.size() == 1328);
  CHECK(tsv_total == 86714775900ull);

  const std::string path = test::synth_file("full_header", synth_preset("full"), true);
  gguf::OpenOptions o;
  o.allow_header_only = true;
  gguf::File f = gguf::File::open(path, o);
  CHECK(f.header_only());
  CHECK(f.file_size() < 8u << 20);  // a few MB: the vocabulary dominates

  uint64_t total = 0;
  std::map<std::string, Row> ours;
  for (const auto& t : f.tensors()) {
    ours[t.name] = {t.ne[0], t.ne[1], t.ne[2], dtype_name(t.type), t.n_bytes};
    CHECK(t.ne[3] == 1);
    total += t.n_bytes;
  }
  CHECK(total == 86714775900ull);
  REQUIRE(ours.size() == tsv.size());
  int mismatches = 0;
  for (const auto& [name, want] : tsv) {
    auto it = ours.find(name);
    if (it == ours.end()) {
      if (++mismatches < 10) FAIL_CHECK("missing ", name);
      continue;
    }
    const Row& got = it->second;
    if (got.ne0 != want.ne0 || got.ne1 != want.ne1 || got.ne2 != want.ne2 || got.dtype != want.dtype || got.bytes != want.bytes)
      if (++mismatches < 10) FAIL_CHECK(name, ": ", got.ne0, "x", got.ne1, "x", got.ne2, " ", got.dtype, " ", got.bytes);
  }
  CHECK(mismatches == 0);
  // Synth writes the tensors in TENSORS.tsv's (ds4 weights_bind) order.
  std::vector<std::string> order;
  for (const auto& t : f.tensors()) order.push_back(t.name);
  CHECK(order == tsv_order);

  // The header-only file still reads and validates.
  const ModelConfig c = read_model_config(f);
  CHECK(c.n_layer == 43);
  CHECK(c.count(LayerKind::SWA) == 2);
  CHECK(c.count(LayerKind::CSA) == 21);
  CHECK(c.count(LayerKind::HCA) == 20);
  CHECK(check_model(f, c).ok());
}

TEST_CASE("synth tiny preset: a few MB, validates, in-file MTP") {
  const std::string path = test::synth_file("tiny_default", synth_preset("tiny"));
  gguf::File f = gguf::File::open(path);
  CHECK(f.file_size() < 4u << 20);
  const ModelConfig c = read_model_config(f);
  CHECK(c.mtp == MtpLayout::InFile);
  CHECK(c.count(LayerKind::SWA) == 2);
  CHECK(c.count(LayerKind::CSA) == 2);
  CHECK(c.count(LayerKind::HCA) == 2);
  CHECK(c.hash_layer_count == 3);
  const Validation v = check_model(f, c);
  CHECK(v.errors.empty());
  CHECK(v.warnings.empty());
  // Only F32, F16, Q8_0 and I32 (the tiny mix), each used.
  std::set<std::string> types;
  for (const auto& t : f.tensors()) types.insert(dtype_name(t.type));
  CHECK(types == std::set<std::string>{"F16", "F32", "I32", "Q8_0"});
  CHECK(f.get_string("tokenizer.ggml.pre") == "joyai-llm");
}

TEST_CASE("synth: same seed, same bytes, whatever the thread count; another seed differs") {
  SynthConfig s = synth_preset("tiny");
  s.seed = 7;
  const std::string a = test::synth_file("det_a", s);
  const int threads = thread_count();
  set_thread_count(1);
  const std::string b = test::synth_file("det_b", s);
  set_thread_count(threads);
  s.seed = 8;
  const std::string c = test::synth_file("det_c", s);
  const std::string ba = read_all(a), bb = read_all(b), bc = read_all(c);
  CHECK(ba.size() > 100000);
  CHECK(ba == bb);
  CHECK(ba.size() == bc.size());
  CHECK(ba != bc);
}

TEST_CASE("synth: every weight format has the target scale, zero mean, finite values") {
  // A small override exercising each directly built format and the quantised ones, at a
  // width every block size divides.
  SynthConfig s = synth_preset("tiny");
  s.model.n_embd = 256;
  s.model.expert_ff = 256;
  s.model.mtp = MtpLayout::Separate;
  s.dtypes.apply("ffn_gate_exps=IQ2_XXS");
  s.dtypes.apply("ffn_up_exps=Q4_K");
  s.dtypes.apply("ffn_down_exps=Q2_K");
  s.dtypes.apply("attn_kv=Q4_0");
  s.dtypes.apply("attn_q_a=BF16");
  const std::string path = test::scratch("formats.gguf");
  SynthWriteOptions o;
  o.path = path;
  write_synth(s, o);
  gguf::File f = gguf::File::open(path);

  struct Want { const char* name; double sd; double mean; };
  const Want wants[] = {
      {"blk.3.ffn_gate_exps.weight", 1 / 16.0, 0},  // fan_in 256
      {"blk.3.ffn_up_exps.weight", 1 / 16.0, 0},
      {"blk.3.ffn_down_exps.weight", 1 / 16.0, 0},
      {"blk.3.attn_kv.weight", 1 / 16.0, 0},
      {"blk.3.attn_q_a.weight", 1 / 16.0, 0},
      {"blk.3.attn_q_b.weight", 1 / std::sqrt(32.0), 0},  // Q8_0, fan_in q_lora 32
      {"token_embd.weight", 1, 0},
      {"blk.3.attn_norm.weight", 0.1, 1},
      {"blk.3.attn_compressor_ape.weight", 0.5, 0},
  };
  for (const auto& w : wants) {
    const std::string name = w.name;
    CAPTURE(name);
    const auto& t = f.require_tensor(w.name);
    std::vector<float> v(size_t(t.n_elements()));
    dequantize_row(t.type, f.bytes(t).data(), v.data(), t.n_elements());
    double sum = 0, sum2 = 0;
    bool finite = true;
    for (float x : v) {
      finite = finite && std::isfinite(x);
      sum += x;
      sum2 += double(x) * x;
    }
    const double n = double(v.size()), mean = sum / n, sd = std::sqrt(sum2 / n - mean * mean);
    CHECK(finite);
    CHECK(sd == doctest::Approx(w.sd).epsilon(v.size() < 2000 ? 0.25 : 0.06));
    CHECK(std::abs(mean - w.mean) < 4 * w.sd / std::sqrt(n) + 0.02 * w.sd);
  }
  // HC scales: U(0.5, 1.5).
  for (float x : std::span<const float>(reinterpret_cast<const float*>(f.bytes(f.require_tensor("blk.3.hc_ffn_scale.weight")).data()), 3)) {
    CHECK(x >= 0.5f);
    CHECK(x < 1.5f);
  }
}

TEST_CASE("synth: tid2eid rows are distinct experts and vary by token") {
  const std::string path = test::synth_file("tiny_default", synth_preset("tiny"));
  gguf::File f = gguf::File::open(path);
  const auto& t = f.require_tensor("blk.0.ffn_gate_tid2eid.weight");
  const int64_t k = t.ne[0], rows = t.ne[1];
  const int32_t* ids = reinterpret_cast<const int32_t*>(f.bytes(t).data());
  std::set<std::vector<int32_t>> distinct_sets;
  for (int64_t r = 0; r < rows; ++r) {
    std::set<int32_t> row(ids + r * k, ids + (r + 1) * k);
    CHECK(int64_t(row.size()) == k);
    distinct_sets.insert(std::vector<int32_t>(row.begin(), row.end()));
  }
  CHECK(distinct_sets.size() >= 40);  // C(8,3) = 56 possible sets over 512 tokens
}

TEST_CASE("synth vocabulary: unique tokens, valid merges, DS4 specials as CONTROL") {
  for (uint32_t n : {512u, 129280u}) {
    CAPTURE(n);
    const SynthVocab v = synth_vocab(n);
    REQUIRE(v.tokens.size() == n);
    REQUIRE(v.types.size() == n);
    std::map<std::string, int> id;
    for (size_t i = 0; i < n; ++i) {
      CHECK(!v.tokens[i].empty());
      CHECK(id.emplace(v.tokens[i], int(i)).second);
    }
    for (const auto& s : ds4_special_tokens()) {
      REQUIRE(id.count(s));
      CHECK(v.types[id[s]] == 3);
    }
    CHECK(v.tokens[v.bos] == "<｜begin▁of▁sentence｜>");
    CHECK(v.tokens[v.eos] == "<｜end▁of▁sentence｜>");
    CHECK(v.merges.size() >= 200);
    for (const auto& m : v.merges) {
      const size_t sp = m.find(' ');
      REQUIRE(sp != std::string::npos);
      CHECK(id.count(m.substr(0, sp)));
      CHECK(id.count(m.substr(sp + 1)));
      CHECK(id.count(m.substr(0, sp) + m.substr(sp + 1)));
    }
    if (n == 129280) {  // Flash's ids for the chat markers
      CHECK(id["<｜User｜>"] == 128803);
      CHECK(id["<｜Assistant｜>"] == 128804);
      CHECK(id["<think>"] == 128821);
      CHECK(id["</think>"] == 128822);
    }
  }
}

TEST_CASE("synth: overrides and refusals") {
  SUBCASE("a K-quant on a row its block does not divide") {
    SynthConfig s = synth_preset("tiny");
    s.dtypes.apply("ffn_down_exps=Q2_K");  // ne0 = expert_ff 32
    CHECK_THROWS_WITH_AS(check_synth_config(s), doctest::Contains("blk.0.ffn_down_exps.weight: dtype Q2_K"), Error);
  }
  SUBCASE("unknown role or dtype") {
    DTypePlan p;
    CHECK_THROWS_WITH_AS(p.apply("attn_qb=F16"), doctest::Contains("unknown tensor role attn_qb"), Error);
    CHECK_THROWS_WITH_AS(p.apply("attn_q_b=Q9_9"), doctest::Contains("unknown dtype Q9_9"), Error);
    CHECK_THROWS_WITH_AS(p.apply("attn_q_b=Q6_K"), doctest::Contains("synth cannot write Q6_K"), Error);
  }
  SUBCASE("layer pattern") {
    ModelConfig m = synth_preset("full").model;
    set_layer_pattern(m, 5, 1, 32);
    CHECK(m.compress_ratios == std::vector<uint32_t>{0, 4, 32, 4, 32});
    CHECK(m.swiglu_clamp_exp.size() == 5);
    set_layer_pattern(m, 2, 2, 32);
    CHECK(m.hash_layer_count == 2);
  }
}
