#include "ops/core/text_file.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "ops/core/error.h"

namespace fp {

std::string read_text_file(const std::string& path, const char* what, std::size_t max_bytes) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) fail(path, ": is a directory; expected a ", what);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open ", what, ": ", std::strerror(errno));
  // Read in pieces up to the bound (a pipe or /dev/stdin has no size to ask for first).
  std::string text;
  char piece[1 << 16];
  while (in.read(piece, sizeof piece) || in.gcount() > 0) {
    text.append(piece, std::size_t(in.gcount()));
    if (text.size() > max_bytes) fail(path, ": more than ", max_bytes, " bytes; expected a ", what, " of at most that");
  }
  if (in.bad()) fail(path, ": read error in ", what);
  return text;
}

}  // namespace fp
