// Plan files: a round trip keeps every field; hostile files (truncated, bit-flipped,
// wrong identifier, wrong version, dangling indices) are refused with an fp::Error and
// never crash; a plan refuses another GGUF and another device, naming both; a header-only
// GGUF and its full counterpart share a fingerprint.
#include <doctest/doctest.h>

#include <cstring>
#include <random>

#include "plan_test_util.h"
#include "planner/plan_io/fingerprint.h"
#include "planner/plan_io/plan_io.h"
#include "planner/plan_io/plan_json.h"
#include "planner/plan_io/plan_text.h"
#include "planner/plan_io/sha256.h"

using namespace fp;
using fp::test::error_of;

namespace {

const std::vector<uint8_t>& tiny_plan_bytes() {
  static const std::vector<uint8_t> b = test::compile_bytes(test::tiny_model(), test::shipped_profile("h100-sxm-80gb"));
  return b;
}

}  // namespace

TEST_CASE("sha256: FIPS 180-4 test vectors") {
  Sha256 a;
  a.update("abc");
  CHECK(a.hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 e;
  CHECK(e.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  Sha256 two;
  two.update("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq");
  CHECK(two.hex() == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  Sha256 million;
  const std::string chunk(1000, 'a');
  for (int i = 0; i < 1000; ++i) million.update(chunk);
  CHECK(million.hex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("plan io: round trip through a file keeps the plan") {
  const auto original = compile_plan(test::tiny_model(), test::shipped_profile("h100-sxm-80gb"), {});
  const std::string path = test::scratch("roundtrip.fplan");
  write_plan_file(path, serialize_plan(*original));
  CHECK(looks_like_plan(path));
  CHECK(!looks_like_plan(test::tiny_header_path()));
  const LoadedPlan lp = load_plan(path);
  std::unique_ptr<plan::PlanT> back(lp->UnPack());
  back->checksum.clear();
  plan::PlanT copy = *original;
  copy.checksum.clear();
  CHECK(serialize_plan(*back) == serialize_plan(copy));
  CHECK(lp->phases()->size() == original->phases.size());
  const auto* n = lp->phases()->Get(0)->nodes()->Get(3);
  CHECK(lp.kernel_id(*n) == original->kernels[original->phases[0]->nodes[3]->kernel]->id);
  // The readable forms cover the plan.
  const std::string json = plan_to_json(lp);
  CHECK(json.find("\"fingerprint\"") != std::string::npos);
  CHECK(json.find("\"candidates\"") != std::string::npos);
  const std::string text = plan_to_text(lp);
  CHECK(text.find("phase decode") != std::string::npos);
  CHECK(text.find("memory (device)") != std::string::npos);
}

TEST_CASE("plan io: truncated files are refused") {
  const auto& good = tiny_plan_bytes();
  CHECK_NOTHROW(verify_plan(good, "good.fplan"));
  for (size_t n : {size_t(0), size_t(3), size_t(8), size_t(15), size_t(16), size_t(64), good.size() / 2, good.size() - 1}) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + std::ptrdiff_t(n));
    CAPTURE(n);
    const std::string e = error_of([&] { verify_plan(cut, "cut.fplan"); });
    CHECK(e.find("cut.fplan") != std::string::npos);
  }
}

TEST_CASE("plan io: any bit flip is refused, never a crash") {
  const auto& good = tiny_plan_bytes();
  std::mt19937_64 rng(7);
  // Every byte of the first 4 KiB (root offset, identifier, vtables, provenance), then random ones.
  std::vector<size_t> where;
  for (size_t i = 0; i < std::min<size_t>(good.size(), 4096); ++i) where.push_back(i);
  for (int i = 0; i < 2000; ++i) where.push_back(rng() % good.size());
  size_t refused = 0;
  for (size_t at : where) {
    std::vector<uint8_t> bad = good;
    bad[at] ^= uint8_t(1u << (rng() % 8));
    try {
      verify_plan(std::move(bad), "flip.fplan");
    } catch (const Error& e) {
      ++refused;
      CHECK(std::string(e.what()).find("flip.fplan") != std::string::npos);
    }
  }
  CHECK(refused == where.size());  // the checksum catches flips the verifier cannot see
}

TEST_CASE("plan io: wrong identifier, wrong version, dangling indices") {
  std::vector<uint8_t> bad = tiny_plan_bytes();
  std::memcpy(bad.data() + 4, "GGUF", 4);
  std::string e = error_of([&] { verify_plan(bad, "id.fplan"); });
  CHECK(e.find("'GGUF'") != std::string::npos);
  CHECK(e.find("expected 'FPLN'") != std::string::npos);

  // A well-formed plan of another format version (checksum valid).
  std::unique_ptr<plan::PlanT> p(verify_plan(tiny_plan_bytes(), "x").root->UnPack());
  p->provenance->format_version = kPlanFormatVersion + 1;
  e = error_of([&] { verify_plan(serialize_plan(*p), "v3.fplan"); });
  CHECK(e.find("format version 3") != std::string::npos);
  CHECK(e.find("reads version 2") != std::string::npos);
  CHECK(e.find("recompile the plan") != std::string::npos);
  // A plan of the one-GPU format before multi-GPU plans (version 1) is refused the same way.
  p->provenance->format_version = 1;
  e = error_of([&] { verify_plan(serialize_plan(*p), "v1.fplan"); });
  CHECK(e.find("plan format version 1; this flashplan reads version 2") != std::string::npos);

  // Well-formed FlatBuffers, valid checksum, but an index that points nowhere.
  std::unique_ptr<plan::PlanT> q(verify_plan(tiny_plan_bytes(), "x").root->UnPack());
  q->phases[0]->nodes[5]->kernel = uint16_t(q->kernels.size() + 3);
  e = error_of([&] { verify_plan(serialize_plan(*q), "idx.fplan"); });
  CHECK(e.find("corrupt plan") != std::string::npos);
  CHECK(e.find("kernel") != std::string::npos);

  std::unique_ptr<plan::PlanT> r(verify_plan(tiny_plan_bytes(), "x").root->UnPack());
  r->phases[1]->segments.back()->count += 1;
  CHECK(error_of([&] { verify_plan(serialize_plan(*r), "seg.fplan"); }).find("segments cover") != std::string::npos);

  std::unique_ptr<plan::PlanT> w(verify_plan(tiny_plan_bytes(), "x").root->UnPack());
  w->phases[0]->nodes[1]->weights.push_back(uint32_t(w->weights.size()));
  CHECK(error_of([&] { verify_plan(serialize_plan(*w), "w.fplan"); }).find("weight") != std::string::npos);

  CHECK(error_of([] { load_plan("/nonexistent.fplan"); }).find("/nonexistent.fplan") != std::string::npos);
}

TEST_CASE("plan io: a plan refuses another model and another device, naming both") {
  const std::string path = test::scratch("match.fplan");
  CompileOptions o;
  o.model_file = "tiny.gguf";
  write_plan_file(path, serialize_plan(*compile_plan(test::tiny_model(), test::shipped_profile("h100-sxm-80gb"), o)));
  const LoadedPlan lp = load_plan(path);
  CHECK_NOTHROW(check_plan_matches(lp, test::tiny_model().file(), "h100-sxm-80gb", 90));

  std::string e = error_of([&] { check_plan_matches(lp, test::full_model().file(), "h100-sxm-80gb"); });
  const std::string want = short_fingerprint(gguf_fingerprint(test::tiny_model().file()));
  const std::string got = short_fingerprint(gguf_fingerprint(test::full_model().file()));
  CHECK(want != got);
  CHECK(e.find(want) != std::string::npos);
  CHECK(e.find(got) != std::string::npos);
  CHECK(e.find("tiny.gguf") != std::string::npos);

  e = error_of([&] { check_plan_matches(lp, test::tiny_model().file(), "h200-141gb"); });
  CHECK(e.find("h100-sxm-80gb") != std::string::npos);
  CHECK(e.find("h200-141gb") != std::string::npos);

  e = error_of([&] { check_plan_matches(lp, test::tiny_model().file(), "h100-sxm-80gb", 120); });
  CHECK(e.find("9.0") != std::string::npos);
  CHECK(e.find("12.0") != std::string::npos);
}

TEST_CASE("fingerprint: header-only and full synth files agree; another dtype mix differs") {
  SynthConfig s = synth_preset("tiny");
  const std::string full = test::synth_file("fp_tiny_full", s, false);
  const std::string head = test::synth_file("fp_tiny_head", s, true);
  gguf::OpenOptions o;
  o.allow_header_only = true;
  const std::string a = gguf_fingerprint(gguf::File::open(full, o));
  CHECK(a.size() == 64);
  CHECK(a == gguf_fingerprint(gguf::File::open(head, o)));
  s.dtypes.apply("attn_q_b=F16");
  const std::string other = test::synth_file("fp_tiny_f16", s, true);
  CHECK(a != gguf_fingerprint(gguf::File::open(other, o)));
}
