// The commit this binary was built from (short hash, "+dirty" when tracked files
// differed), stamped at build time by cmake/write_build_commit.cmake.
#pragma once

namespace fp {
const char* build_commit();
}
