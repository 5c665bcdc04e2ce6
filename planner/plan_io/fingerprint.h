// The fingerprint of a GGUF a plan is bound to: SHA-256 over a canonical encoding of its
// header (version, alignment, every metadata key and value in file order) and its tensor
// table (name, dtype, shape, offset). Tensor data is not read, so a header-only file
// written by `flashplan synth --header-only` and the full file it describes share a
// fingerprint (the `flashplan.header_only` marker key is left out for that reason).
// Another file, another dtype mix or another tokenizer gives another fingerprint.
#pragma once
#include <string>

#include "planner/gguf/gguf.h"

namespace fp {

std::string gguf_fingerprint(const gguf::File& f);

// The first 16 hex digits, for messages and tables.
inline std::string short_fingerprint(const std::string& fp) { return fp.substr(0, 16); }

}  // namespace fp
