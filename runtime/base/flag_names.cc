#include "runtime/base/flag_names.h"

namespace tern::base {

std::vector<std::string> NormalizeFlagDashes(int argc, char** argv) {
  std::vector<std::string> out;
  out.reserve(argc);
  bool positional = false;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (i > 0 && !positional) {
      if (arg == "--") {
        positional = true;
      } else if (arg.size() > 2 && arg[0] == '-') {
        const size_t start = arg[1] == '-' ? 2 : 1;
        const size_t end = std::min(arg.find('='), arg.size());
        for (size_t k = start; k < end; ++k) {
          if (arg[k] == '-') arg[k] = '_';
        }
      }
    }
    out.push_back(std::move(arg));
  }
  return out;
}

}  // namespace tern::base
