#include "tools/common/tool_flags.h"

#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "runtime/base/flag_names.h"

namespace tern::tools {

std::vector<std::string> ParseToolCommandLine(int argc, char** argv) {
  // Abseil's parser takes char**: the normalized strings stay alive here.
  std::vector<std::string> args = base::NormalizeFlagDashes(argc, argv);
  std::vector<char*> arg_ptrs;
  for (auto& arg : args) arg_ptrs.push_back(arg.data());
  const std::vector<char*> positional = absl::ParseCommandLine(int(arg_ptrs.size()), arg_ptrs.data());
  return std::vector<std::string>(positional.begin(), positional.end());
}

std::optional<std::vector<int32_t>> ParseClassList(const std::string& text) {
  std::vector<int32_t> classes;
  const std::vector<std::string> range = absl::StrSplit(text, '-');
  int32_t a = 0, b = 0;
  if (range.size() == 2 && absl::SimpleAtoi(range[0], &a) && absl::SimpleAtoi(range[1], &b) && a <= b) {
    for (int32_t c = a; c <= b; ++c) classes.push_back(c);
    return classes;
  }
  // An empty text splits into one empty part, which is not a number.
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    if (!absl::SimpleAtoi(part, &a)) return std::nullopt;
    classes.push_back(a);
  }
  return classes;
}

std::optional<std::vector<int64_t>> ParsePositiveList(const std::string& text) {
  std::vector<int64_t> values;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int64_t v = 0;
    if (!absl::SimpleAtoi(part, &v) || v <= 0) return std::nullopt;
    values.push_back(v);
  }
  return values;
}

}  // namespace tern::tools
