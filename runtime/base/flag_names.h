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

}  // namespace tern::base
