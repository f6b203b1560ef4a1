// Shared by the fuzz targets: reading the tree's real files at start-up and
// the one way a target reports a broken property (abort, so that libFuzzer
// saves the input). Targets are single-threaded; nothing here is thread-safe.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace tern::fuzz {

// The contents of <source tree>/<relative>; aborts when unreadable (a broken
// build, not an input).
inline std::string ReadSourceFile(const std::string& relative) {
  const std::string path = std::string(TERN_FUZZ_SOURCE_DIR) + "/" + relative;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "fuzz target set-up: cannot read %s\n", path.c_str());
    std::abort();
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace tern::fuzz

// A property every input must keep; a violation aborts with the condition.
#define FUZZ_ASSERT(condition)                                                        \
  do {                                                                                \
    if (!(condition)) {                                                               \
      std::fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)
