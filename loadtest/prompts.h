// Prompt sets for tern-load: plain text (one prompt per line), CSV (RFC 4180,
// a header row, quoted fields may hold newlines and "" escapes) and JSON
// Lines. Empty prompts are dropped. Any thread.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "loadtest/options.h"

namespace tern::loadtest {

// kCsv for *.csv, kJsonl for *.jsonl / *.ndjson, else kText.
PromptFormat FormatFromPath(const std::string& path);

// One prompt per line; a trailing '\r' is dropped, blank lines are skipped.
std::vector<std::string> ParseTextPrompts(absl::string_view content);

// The first column named request, prompt, text, question or instruction
// (case-insensitive), or the only column of a one-column file. Errors name
// the line of an unterminated quote or a row with too few fields.
absl::StatusOr<std::vector<std::string>> ParseCsvPrompts(absl::string_view content);

// Each non-blank line is a JSON string or an object with a string field
// prompt, text, request, question or instruction (first found wins).
absl::StatusOr<std::vector<std::string>> ParseJsonlPrompts(absl::string_view content);

// Reads `path` and parses it as `format` (kAuto: by extension). Fails when
// the file cannot be read or holds no prompt.
absl::StatusOr<std::vector<std::string>> LoadPrompts(const std::string& path, PromptFormat format);

}  // namespace tern::loadtest
