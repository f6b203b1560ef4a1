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

std::vector<std::string> JoinRepeatedListFlag(std::vector<std::string> args, const std::string& name) {
  const std::string bare = "--" + name;
  const std::string with_value = bare + "=";
  std::vector<std::string> out;
  std::string joined;
  size_t first = 0;
  int seen = 0;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      out.insert(out.end(), args.begin() + i, args.end());
      break;
    }
    std::string value;
    if (i > 0 && arg == bare && i + 1 < args.size()) {
      value = args[++i];
    } else if (i > 0 && arg.rfind(with_value, 0) == 0) {
      value = arg.substr(with_value.size());
    } else {
      out.push_back(arg);
      continue;
    }
    if (seen++ == 0) {
      first = out.size();
      out.emplace_back();
    }
    joined += (joined.empty() ? "" : ",") + value;
  }
  if (seen > 0) out[first] = with_value + joined;
  return out;
}

}  // namespace tern::base
