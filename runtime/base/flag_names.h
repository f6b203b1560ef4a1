// Abseil flags must be identifiers (--grpc_port), while tern documents the
// common spelling --grpc-port. NormalizeFlagDashes rewrites the name part of
// each "--long-flag[=value]" argument to underscores, so both work.
#pragma once

#include <string>
#include <vector>

namespace tern::base {

// Returns argv with dashes inside long flag names turned into underscores.
// Stops rewriting after a bare "--" (the rest are positional).
std::vector<std::string> NormalizeFlagDashes(int argc, char** argv);

// Abseil keeps only the last value of a repeated flag. For a list flag
// (std::vector<std::string>) that may be repeated, this joins every
// "--name VALUE" and "--name=VALUE" of `args` (already normalized) into one
// "--name=V1,V2,..." where the first stood, so `--model a --model b` means
// `--model=a,b`. A trailing "--name" without a value is left for Abseil to
// report. Stops after a bare "--".
std::vector<std::string> JoinRepeatedListFlag(std::vector<std::string> args, const std::string& name);

}  // namespace tern::base
