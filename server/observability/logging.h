// Process-wide spdlog setup for ternd: level, and text or JSON lines on
// stderr. Call once from main() before any thread starts.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace tern::server {

// `level` is one of trace, debug, info, warn, error (empty means info).
// With `json`, each line is one JSON object {"ts","level","msg"} with the
// message escaped, for log shippers.
absl::Status ConfigureLogging(const std::string& level, bool json);

// Escapes a string for embedding inside a JSON string literal.
std::string JsonEscape(const std::string& text);

}  // namespace tern::server
