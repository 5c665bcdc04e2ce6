// The built-in model: the `tiny` synth preset (seed 1), generated once into a cache
// directory and reused, so every command that needs a model runs without one given.
//
// The cache is $XDG_CACHE_HOME/flashplan, else $HOME/.cache/flashplan, else the
// system temp directory; the file name carries the synth version and seed, so a newer
// flashplan whose synth writes other bytes regenerates instead of reusing a stale file.
// Generation writes a private temporary file and renames it into place, so concurrent
// first runs never see a partial file.
#pragma once
#include <cstdint>
#include <string>

namespace fp {

inline constexpr uint64_t kBuiltinSeed = 1;

// Path of the built-in model, generating it on first use. Throws fp::Error when the
// cache directory cannot be created or written.
std::string builtin_model_path();

// The cache directory used (created if missing).
std::string builtin_cache_dir();

}  // namespace fp
