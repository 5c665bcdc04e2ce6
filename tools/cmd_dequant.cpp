// `flashplan dequant FILE TENSOR -o OUT.f32`: one tensor's values as little-endian
// float32 in GGUF element order (ne[0] fastest), through fp::dequantize_row.
// Streams a batch of rows at a time, so memory stays bounded for any tensor size;
// the output appears under its name only when complete.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "ops/core/error.h"
#include "ops/quant/dequant.h"
#include "planner/gguf/gguf.h"
#include "tools/command.h"

namespace {

constexpr int64_t kBatchFloats = int64_t(1) << 22;  // 16 MiB of output per write

int run(const std::string& path, const std::string& name, const std::string& out) {
  const fp::gguf::File f = fp::gguf::File::open(path);
  const fp::gguf::TensorInfo& t = f.require_tensor(name);
  if (!fp::can_dequantize(t.type))
    fp::fail("tensor \"", t.name, "\": type ", fp::dtype_name(t.type), " cannot be dequantised to float32 (",
             f.path(), ")");
  const std::span<const uint8_t> bytes = f.bytes(t);
  const int64_t row = t.ne[0];
  const int64_t rows = row == 0 ? 0 : t.n_elements() / row;
  const int64_t rb = fp::row_bytes(t.type, row);
  const int64_t batch = row == 0 ? 1 : std::max<int64_t>(1, kBatchFloats / row);

  const std::string tmp = out + ".partial";
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(tmp.c_str(), "wb"), &std::fclose);
  if (!file) fp::fail("cannot create ", tmp, ": ", std::strerror(errno));
  try {
    std::vector<float> buf(size_t(std::min(rows, batch) * row));
    for (int64_t r0 = 0; r0 < rows; r0 += batch) {
      const int64_t n = std::min(batch, rows - r0);
      for (int64_t r = 0; r < n; ++r)
        fp::dequantize_row(t.type, bytes.data() + (r0 + r) * rb, buf.data() + r * row, row);
      if (std::fwrite(buf.data(), sizeof(float), size_t(n * row), file.get()) != size_t(n * row))
        fp::fail("cannot write ", tmp, ": ", std::strerror(errno));
    }
    if (std::fclose(file.release()) != 0) fp::fail("cannot write ", tmp, ": ", std::strerror(errno));
  } catch (...) {
    file.reset();
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), out.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    fp::fail("cannot rename ", tmp, " to ", out, ": ", std::strerror(err));
  }
  return 0;
}

}  // namespace

FP_COMMAND("dequant", "Write one GGUF tensor as little-endian float32 in GGUF element order", [](CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto name = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  app.add_option("file", *path, "GGUF file")->required();
  app.add_option("tensor", *name, "Tensor name")->required();
  app.add_option("-o,--output", *out, "Output file (float32, little-endian)")->required();
  return [path, name, out]() { return run(*path, *name, *out); };
});
