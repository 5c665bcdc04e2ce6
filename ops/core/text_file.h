// Reading a small text file (a device profile, a profile CSV, a prompt) whole, with the
// one error wording: which file, what it was meant to be, and why it could not be read.
#pragma once
#include <cstddef>
#include <string>

namespace fp {

// The bytes of path. what names the file's role in messages ("device profile",
// "--prompt-file"); a file larger than max_bytes is refused before it is read.
std::string read_text_file(const std::string& path, const char* what, std::size_t max_bytes);

}  // namespace fp
