// builtin_model_path: generate-once cache of the tiny synth model.
#include "planner/model/builtin.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "ops/core/error.h"
#include "planner/gguf/gguf.h"
#include "planner/model/synth.h"

namespace fp {
namespace {

namespace fs = std::filesystem;

// An existing cache file is reused only if it opens and says it is this synth version.
bool usable(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  try {
    const gguf::File f = gguf::File::open(path);
    const gguf::Value* v = f.find("flashplan.synth.version");
    return v && v->u == kSynthVersion;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace

std::string builtin_cache_dir() {
  fs::path dir;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) dir = fs::path(x) / "flashplan";
  else if (const char* h = std::getenv("HOME"); h && *h) dir = fs::path(h) / ".cache" / "flashplan";
  else dir = fs::temp_directory_path() / "flashplan";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("built-in model cache ", dir.string(), ": cannot create it: ", ec.message());
  return dir.string();
}

std::string builtin_model_path() {
  const std::string dir = builtin_cache_dir();
  const std::string path = str(dir, "/tiny-v", kSynthVersion, "-seed", kBuiltinSeed, ".gguf");
  if (usable(path)) return path;
  SynthConfig s = synth_preset("tiny");
  s.seed = kBuiltinSeed;
  SynthWriteOptions o;
  o.path = str(path, ".tmp-", getpid());
  write_synth(s, o);
  std::error_code ec;
  fs::rename(o.path, path, ec);
  if (ec) {
    fs::remove(o.path, ec);
    fail("built-in model ", path, ": cannot move it into place: ", ec.message());
  }
  return path;
}

}  // namespace fp
