// Command-line parsing shared by the tern-* tools: Abseil flags with
// tern's dashed spelling, and flag values the DiT tools read.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tern::tools {

// Parses argv into the program's Abseil flags, accepting each long flag's
// dashed spelling (--per-class as --per_class, base::NormalizeFlagDashes).
// Abseil's handling stands: an unknown flag or a bad value prints an error
// and exits the process with 1, and --help and the other usage flags print
// the usage and exit. Returns the positional arguments, argv[0] first.
std::vector<std::string> ParseToolCommandLine(int argc, char** argv);

// The class labels a --classes flag names: a range "A-B" with A <= B (A,
// A+1, ..., B) or a list "A,B,C" (in its order, repeats kept). nullopt for
// anything else, an empty list included.
std::optional<std::vector<int32_t>> ParseClassList(const std::string& text);

// A comma-separated list of positive integers ("1,8,64": batch sizes, token
// counts, microseconds). nullopt when a part is not one, or the list is empty.
std::optional<std::vector<int64_t>> ParsePositiveList(const std::string& text);

}  // namespace tern::tools
