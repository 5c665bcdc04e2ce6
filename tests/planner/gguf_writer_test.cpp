// gguf::Writer: gguf-py's files re-written byte for byte, write -> read round trips of
// every value type, concurrent fill, header-only files, split GGUFs read as one model,
// and the writer's own refusals.
#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <set>
#include <random>
#include <thread>

#include "ops/core/error.h"
#include "planner/gguf/gguf.h"

using fp::DType;
using fp::gguf::File;
using fp::gguf::OpenOptions;
using fp::gguf::Value;
using fp::gguf::ValueType;
using fp::gguf::WriteOptions;
using fp::gguf::Writer;
namespace fs = std::filesystem;

namespace {

std::string data_path(const std::string& rel) { return std::string(FLASHPLAN_TEST_DATA) + "/gguf/" + rel; }

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A fresh directory under the system temp dir, removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "fp_gguf_XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() { fs::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// A Writer that re-adds what a reader saw, in order.
Writer copy_layout(const File& f) {
  Writer w;
  for (const auto& [k, v] : f.metadata()) w.add(k, v);
  for (const auto& t : f.tensors()) w.add_tensor(t.name, t.type, std::vector<int64_t>(t.ne.begin(), t.ne.begin() + t.n_dims));
  return w;
}

Writer::Fill copy_from(const File& f) {
  return [&f](size_t i, std::span<uint8_t> dst) {
    const auto src = f.bytes(f.tensors()[i]);
    REQUIRE(src.size() == dst.size());
    std::memcpy(dst.data(), src.data(), src.size());
  };
}

bool same_value(const Value& a, const Value& b) {
  if (a.type != b.type) return false;
  if (a.type == ValueType::ARRAY && a.item_type != b.item_type) return false;
  auto same_f = [](double x, double y) { return std::memcmp(&x, &y, sizeof x) == 0; };
  if (!same_f(a.f, b.f) || a.arr_f.size() != b.arr_f.size()) return false;
  for (size_t k = 0; k < a.arr_f.size(); ++k)
    if (!same_f(a.arr_f[k], b.arr_f[k])) return false;
  return a.u == b.u && a.i == b.i && a.s == b.s && a.arr_u == b.arr_u && a.arr_i == b.arr_i && a.arr_s == b.arr_s;
}

Value array_of(ValueType item, std::vector<uint64_t> u, std::vector<int64_t> i = {}, std::vector<double> f = {}) {
  Value v;
  v.type = ValueType::ARRAY;
  v.item_type = item;
  v.arr_u = std::move(u);
  v.arr_i = std::move(i);
  v.arr_f = std::move(f);
  return v;
}

Value scalar(ValueType t, uint64_t u, int64_t i = 0, double f = 0) {
  Value v;
  v.type = t;
  v.u = u;
  v.i = i;
  v.f = f;
  return v;
}

}  // namespace

TEST_CASE("gguf writer: gguf-py's files re-written from what the reader saw are byte-identical") {
  TempDir dir;
  for (const char* name : {"small.gguf", "align64.gguf", "no_tensors.gguf", "policy/alignment_8.gguf"}) {
    INFO(name);
    const File f = File::open(data_path(name));
    const Writer w = copy_layout(f);
    CHECK(w.alignment() == f.alignment());
    for (unsigned threads : {1u, 4u}) {
      WriteOptions o;
      o.threads = threads;
      const std::string out = dir / "copy.gguf";
      w.write(out, copy_from(f), o);
      const std::vector<uint8_t> want = read_bytes(data_path(name));
      const std::vector<uint8_t> got = read_bytes(out);
      CHECK(got.size() == w.total_size());
      CHECK(got == want);
      CHECK_FALSE(fs::exists(out + ".partial"));
    }
    for (size_t i = 0; i < f.tensors().size(); ++i) {
      CHECK(w.tensors()[i].offset == f.tensors()[i].offset);
      CHECK(w.tensors()[i].file_offset == f.tensors()[i].file_offset);
    }
  }
}

TEST_CASE("gguf writer: set_alignment lays tensors out and writes general.alignment like gguf-py") {
  const File f = File::open(data_path("align64.gguf"));
  Writer w;
  w.add("general.architecture", f.metadata()[0].second);
  w.set_alignment(64);  // gguf-py's add_custom_alignment, at the same point
  for (size_t k = 2; k < f.metadata().size(); ++k) w.add(f.metadata()[k].first, f.metadata()[k].second);
  for (const auto& t : f.tensors()) w.add_tensor(t.name, t.type, std::vector<int64_t>(t.ne.begin(), t.ne.begin() + t.n_dims));
  TempDir dir;
  w.write(dir / "a.gguf", copy_from(f));
  CHECK(read_bytes(dir / "a.gguf") == read_bytes(data_path("align64.gguf")));
}

TEST_CASE("gguf writer: write -> read round trip of every value type and several tensor types") {
  Writer w;
  w.add("general.architecture", Value::make_string("roundtrip"));
  w.add("u8", scalar(ValueType::U8, 255));
  w.add("i8", scalar(ValueType::I8, 0, -128));
  w.add("u16", scalar(ValueType::U16, 65535));
  w.add("i16", scalar(ValueType::I16, 0, -32768));
  w.add("u32", Value::make_u32(0xffffffffu));
  w.add("i32", Value::make_i32(std::numeric_limits<int32_t>::min()));
  w.add("u64", Value::make_u64(std::numeric_limits<uint64_t>::max()));
  w.add("i64", scalar(ValueType::I64, 0, std::numeric_limits<int64_t>::min()));
  w.add("f32", Value::make_f32(-0.0f));
  w.add("f32.sub", Value::make_f32(std::numeric_limits<float>::denorm_min()));
  w.add("f32.inf", Value::make_f32(std::numeric_limits<float>::infinity()));
  w.add("f64", scalar(ValueType::F64, 0, 0, std::numeric_limits<double>::max()));
  w.add("bool", Value::make_bool(true));
  w.add("str", Value::make_string(std::string("nul\0inside", 10)));
  w.add("str.empty", Value::make_string(""));
  w.add("arr.u8", array_of(ValueType::U8, {0, 1, 255}));
  w.add("arr.bool", array_of(ValueType::BOOL, {1, 0}));
  w.add("arr.u64", array_of(ValueType::U64, {std::numeric_limits<uint64_t>::max()}));
  w.add("arr.i16", array_of(ValueType::I16, {}, {-32768, 32767}));
  w.add("arr.i32", Value::make_array_i32({-1, 0, 1}));
  w.add("arr.f32", Value::make_array_f32({1.5f, -0.0f}));
  w.add("arr.f64", array_of(ValueType::F64, {}, {}, {1e-300, -2.0}));
  w.add("arr.str", Value::make_array_string({"a", "", "日本"}));
  w.add("arr.empty", Value::make_array_i32({}));

  std::mt19937 rng(7);
  w.add_tensor("t.f32", DType::F32, {3, 5});
  w.add_tensor("t.q8_0", DType::Q8_0, {64, 2});
  w.add_tensor("t.q2_k", DType::Q2_K, {256, 1, 3});
  w.add_tensor("t.empty", DType::F16, {8, 0});
  w.add_tensor("t.iq2_xxs", DType::IQ2_XXS, {256, 1, 1, 2});
  w.add_tensor("t.i32", DType::I32, {7});
  w.add_tensor("t.scalar", DType::F32, {});
  std::vector<std::vector<uint8_t>> payload;
  for (const auto& t : w.tensors()) {
    payload.emplace_back(t.n_bytes);
    for (auto& b : payload.back()) b = uint8_t(rng());
  }

  TempDir dir;
  WriteOptions o;
  o.threads = 3;
  w.write(dir / "rt.gguf", [&](size_t i, std::span<uint8_t> dst) { std::memcpy(dst.data(), payload[i].data(), dst.size()); }, o);
  const File f = File::open(dir / "rt.gguf");
  CHECK(f.file_size() == w.total_size());
  REQUIRE(f.metadata().size() == 25);
  Writer again = copy_layout(f);
  TempDir dir2;
  again.write(dir2 / "rt2.gguf", copy_from(f));
  CHECK(read_bytes(dir / "rt.gguf") == read_bytes(dir2 / "rt2.gguf"));
  CHECK(f.get_string("str") == std::string("nul\0inside", 10));
  CHECK(f.get_uint("u64") == std::numeric_limits<uint64_t>::max());
  CHECK(f.get_int("i64") == std::numeric_limits<int64_t>::min());
  CHECK(std::signbit(f.get_float("f32")));
  CHECK(float(f.get_float("f32.sub")) == std::numeric_limits<float>::denorm_min());
  CHECK(f.get_float_array("arr.f32") == std::vector<double>{1.5, -0.0});
  CHECK(f.get_string_array("arr.str") == std::vector<std::string>{"a", "", "日本"});
  CHECK(f.find("arr.empty")->array_size() == 0);
  CHECK(same_value(*f.find("arr.bool"), array_of(ValueType::BOOL, {1, 0})));
  CHECK(same_value(*f.find("arr.i16"), array_of(ValueType::I16, {}, {-32768, 32767})));
  CHECK(same_value(*f.find("f64"), scalar(ValueType::F64, 0, 0, std::numeric_limits<double>::max())));

  REQUIRE(f.tensors().size() == w.tensors().size());
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const auto& a = f.tensors()[i];
    const auto& b = w.tensors()[i];
    INFO(a.name);
    CHECK(a.name == b.name);
    CHECK(a.type == b.type);
    CHECK(a.n_dims == b.n_dims);
    CHECK(a.ne == b.ne);
    CHECK(a.offset == b.offset);
    CHECK(a.file_offset == b.file_offset);
    CHECK(a.n_bytes == b.n_bytes);
    const auto bytes = f.bytes(a);
    CHECK(std::vector<uint8_t>(bytes.begin(), bytes.end()) == payload[i]);
  }
  CHECK(f.require_tensor("t.scalar").n_elements() == 1);
  CHECK(f.require_tensor("t.empty").n_bytes == 0);
}

TEST_CASE("gguf writer: concurrent fill calls run on several threads and give the same file") {
  Writer w;
  w.add("general.architecture", Value::make_string("threads"));
  for (int k = 0; k < 32; ++k) w.add_tensor("t" + std::to_string(k), DType::F32, {1000 + 8 * k});
  auto fill = [](size_t i, std::span<uint8_t> dst) {
    for (size_t b = 0; b < dst.size(); ++b) dst[b] = uint8_t(i * 31 + b);
  };
  TempDir dir;
  w.write(dir / "one.gguf", fill);
  std::mutex m;
  std::set<std::thread::id> ids;
  WriteOptions o;
  o.threads = 4;
  w.write(dir / "four.gguf", [&](size_t i, std::span<uint8_t> dst) {
    {
      std::lock_guard<std::mutex> lock(m);
      ids.insert(std::this_thread::get_id());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    fill(i, dst);
  }, o);
  CHECK(ids.size() > 1);
  CHECK(read_bytes(dir / "one.gguf") == read_bytes(dir / "four.gguf"));
}

TEST_CASE("gguf writer: a failing fill leaves no file behind and reports the error") {
  Writer w;
  w.add("general.architecture", Value::make_string("x"));
  w.add_tensor("a", DType::F32, {8});
  w.add_tensor("b", DType::F32, {8});
  TempDir dir;
  for (unsigned threads : {1u, 2u}) {
    WriteOptions o;
    o.threads = threads;
    CHECK_THROWS_WITH_AS(w.write(dir / "bad.gguf", [](size_t i, std::span<uint8_t>) {
      if (i == 1) fp::fail("synthetic failure in tensor ", i);
    }, o), "synthetic failure in tensor 1", fp::Error);
    CHECK_FALSE(fs::exists(dir / "bad.gguf"));
    CHECK_FALSE(fs::exists(dir / "bad.gguf.partial"));
  }
  CHECK_THROWS_WITH_AS(w.write(dir / "no/such/dir/x.gguf", [](size_t, std::span<uint8_t>) {}),
                       doctest::Contains("cannot create"), fp::Error);
}

TEST_CASE("gguf writer: header-only files carry the tensor table and refuse byte access") {
  const File src = File::open(data_path("small.gguf"));
  const Writer w = copy_layout(src);
  TempDir dir;
  bool called = false;
  w.write(dir / "h.gguf", [&](size_t, std::span<uint8_t>) { called = true; }, true);
  CHECK_FALSE(called);
  CHECK(fs::file_size(dir / "h.gguf") == w.total_size(true));
  CHECK(w.total_size(true) < w.total_size());

  CHECK_THROWS_WITH_AS(File::open(dir / "h.gguf"), doctest::Contains("header-only GGUF (flashplan.header_only = true)"),
                       fp::Error);
  OpenOptions opts;
  opts.allow_header_only = true;
  const File h = File::open(dir / "h.gguf", opts);
  CHECK(h.header_only());
  CHECK(h.get_bool("flashplan.header_only"));
  CHECK(h.metadata().size() == src.metadata().size() + 1);
  REQUIRE(h.tensors().size() == src.tensors().size());
  for (size_t i = 0; i < h.tensors().size(); ++i) {
    CHECK(h.tensors()[i].name == src.tensors()[i].name);
    CHECK(h.tensors()[i].offset == src.tensors()[i].offset);
    CHECK(h.tensors()[i].n_bytes == src.tensors()[i].n_bytes);
  }
  CHECK_THROWS_WITH_AS(h.bytes(h.tensors()[0]), doctest::Contains("header-only"), fp::Error);
  // A full file is still a full file when header-only files are allowed.
  CHECK_FALSE(File::open(data_path("small.gguf"), opts).header_only());
}

TEST_CASE("gguf split: NAME-0000k-of-0000N.gguf shards read as one model from any shard") {
  TempDir dir;
  // Writes shard file `file_no` (0-based) of `count`, claiming split.no = `no`.
  auto shard = [&](int file_no, int no, int count, std::vector<std::string> names, bool arch, int64_t total) {
    Writer w;
    if (arch) w.add("general.architecture", Value::make_string("split-test"));
    w.add(fp::gguf::kSplitNo, scalar(ValueType::U16, uint64_t(no)));
    w.add(fp::gguf::kSplitCount, scalar(ValueType::U16, uint64_t(count)));
    w.add(fp::gguf::kSplitTensors, Value::make_i32(int32_t(total)));
    for (const auto& n : names) w.add_tensor(n, DType::F32, {4});
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, "-%05d-of-%05d.gguf", file_no + 1, count);
    w.write(dir / ("model" + std::string(suffix)), [&](size_t i, std::span<uint8_t> dst) {
      for (size_t k = 0; k < 4; ++k) {
        const float v = float(no * 100 + int(i) * 10 + int(k));
        std::memcpy(dst.data() + 4 * k, &v, 4);
      }
    });
  };
  shard(0, 0, 3, {"a", "b"}, true, 5);
  shard(1, 1, 3, {"c"}, false, 5);
  shard(2, 2, 3, {"d", "e"}, false, 5);

  for (const char* first : {"model-00001-of-00003.gguf", "model-00003-of-00003.gguf"}) {
    const File f = File::open(dir / first);
    CHECK(f.shard_count() == 3);
    CHECK(f.path() == dir / "model-00001-of-00003.gguf");
    CHECK(f.get_string("general.architecture") == "split-test");
    REQUIRE(f.tensors().size() == 5);
    const auto& c = f.require_tensor("c");
    CHECK(c.shard == 1);
    const auto& e = f.require_tensor("e");
    CHECK(e.shard == 2);
    float v;
    std::memcpy(&v, f.bytes(e).data() + 4, 4);
    CHECK(v == 211.0f);
    std::memcpy(&v, f.bytes(c).data(), 4);
    CHECK(v == 100.0f);
  }

  fs::remove(dir / "model-00002-of-00003.gguf");
  CHECK_THROWS_WITH_AS(File::open(dir / "model-00001-of-00003.gguf"),
                       doctest::Contains("model-00002-of-00003.gguf"), fp::Error);

  // The split keys must agree with the file names and with each other.
  shard(0, 0, 2, {"a"}, true, 2);
  shard(1, 0, 2, {"b"}, false, 2);
  CHECK_THROWS_WITH_AS(File::open(dir / "model-00001-of-00002.gguf"),
                       doctest::Contains("\"split.no\" is 0, expected 1"), fp::Error);
  shard(1, 1, 2, {"a"}, false, 2);
  CHECK_THROWS_WITH_AS(File::open(dir / "model-00001-of-00002.gguf"),
                       doctest::Contains("duplicate tensor name \"a\" in split shards 1 and 2"), fp::Error);
  shard(1, 1, 2, {"b", "c"}, false, 2);
  CHECK_THROWS_WITH_AS(File::open(dir / "model-00001-of-00002.gguf"),
                       doctest::Contains("\"split.tensors.count\" is 2, but the 2 shard(s) hold 3 tensors"), fp::Error);
  shard(1, 1, 2, {"b"}, false, 2);
  CHECK(File::open(dir / "model-00002-of-00002.gguf").tensors().size() == 2);

  // A lone shard under another name is refused rather than read as a partial model.
  fs::copy_file(dir / "model-00001-of-00002.gguf", dir / "renamed.gguf");
  CHECK_THROWS_WITH_AS(File::open(dir / "renamed.gguf"),
                       doctest::Contains("\"split.count\" is 2: this file is one shard of a split GGUF"), fp::Error);
}

TEST_CASE("gguf writer: a huge alignment costs no memory (fuzzer finding: 2^31 padded in RAM)") {
  Writer w;
  w.add("general.architecture", Value::make_string("x"));
  w.set_alignment(uint32_t(1) << 31);
  CHECK(w.header_bytes().size() < 100);
  CHECK(w.total_size() == uint64_t(1) << 31);
}

TEST_CASE("gguf writer: refuses what the reader would refuse") {
  Writer w;
  w.add("k", Value::make_u32(1));
  CHECK_THROWS_WITH_AS(w.add("k", Value::make_u32(2)), doctest::Contains("duplicate metadata key \"k\""), fp::Error);
  CHECK_THROWS_WITH_AS(w.add("", Value::make_u32(2)), doctest::Contains("empty"), fp::Error);
  CHECK_THROWS_WITH_AS(w.add("u8", scalar(ValueType::U8, 256)), doctest::Contains("out of range"), fp::Error);
  CHECK_THROWS_WITH_AS(w.add("b", scalar(ValueType::BOOL, 2)), doctest::Contains("out of range"), fp::Error);
  Value nested;
  nested.type = ValueType::ARRAY;
  nested.item_type = ValueType::ARRAY;
  CHECK_THROWS_WITH_AS(w.add("n", nested), doctest::Contains("nested arrays"), fp::Error);
  CHECK_THROWS_WITH_AS(w.add("general.alignment", Value::make_u64(32)), doctest::Contains("expected uint32"), fp::Error);
  CHECK_THROWS_WITH_AS(w.add("general.alignment", Value::make_u32(48)), doctest::Contains("power of two"), fp::Error);
  CHECK_THROWS_WITH_AS(w.set_alignment(0), doctest::Contains("power of two"), fp::Error);
  CHECK_THROWS_WITH_AS(w.add_tensor("q", DType::Q8_0, {48}), doctest::Contains("block size 32"), fp::Error);
  CHECK_THROWS_WITH_AS(w.add_tensor(std::string(65, 'x'), DType::F32, {1}), doctest::Contains("length 65"), fp::Error);
  CHECK_THROWS_WITH_AS(w.add_tensor("five", DType::F32, {1, 1, 1, 1, 1}), doctest::Contains("at most 4"), fp::Error);
  CHECK_THROWS_WITH_AS(w.add_tensor("neg", DType::F32, {-1}), doctest::Contains("expected >= 0"), fp::Error);
  CHECK_THROWS_WITH_AS(w.add_tensor("big", DType::F32, {int64_t(1) << 32, int64_t(1) << 32}),
                       doctest::Contains("overflows"), fp::Error);
  w.add_tensor("ok", DType::F32, {1});
  CHECK_THROWS_WITH_AS(w.add_tensor("ok", DType::F32, {1}), doctest::Contains("duplicate tensor name"), fp::Error);
}
