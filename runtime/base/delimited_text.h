// Delimited text (RFC 4180 CSV and its `;`-separated variant): rows of
// fields. One reader for every table the project reads: tern-load's prompt
// sets and the SoT router's labelled question sets.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tern {

// Splits `text` into rows of fields separated by `separator`. LF and CRLF end
// a row; a blank line is not a row. A field in double quotes may hold the
// separator, line breaks (CRLF inside quotes becomes LF) and "" for a quote.
// Errors name the line: a quote inside an unquoted field, text after a closing
// quote, an unterminated quoted field.
absl::StatusOr<std::vector<std::vector<std::string>>> SplitDelimitedText(absl::string_view text, char separator);

}  // namespace tern
