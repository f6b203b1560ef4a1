#include "runtime/base/delimited_text.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tern {

absl::StatusOr<std::vector<std::vector<std::string>>> SplitDelimitedText(absl::string_view text, char separator) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool in_quotes = false;
  bool field_was_quoted = false;
  int line = 1;
  int quote_line = 0;
  const auto end_row = [&] {
    row.push_back(std::move(field));
    field.clear();
    field_was_quoted = false;
    if (!(row.size() == 1 && row[0].empty())) rows.push_back(std::move(row));
    row.clear();
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field.push_back('"');
          ++i;
        } else {
          in_quotes = false;
        }
      } else if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') {
        // CRLF inside a field: the '\n' that follows is kept alone.
      } else {
        if (c == '\n') ++line;
        field.push_back(c);
      }
      continue;
    }
    if (c == '"') {
      if (!field.empty() || field_was_quoted) {
        return absl::InvalidArgumentError(absl::StrCat("line ", line, ": quote inside an unquoted field"));
      }
      in_quotes = true;
      field_was_quoted = true;
      quote_line = line;
    } else if (c == separator) {
      row.push_back(std::move(field));
      field.clear();
      field_was_quoted = false;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      ++line;
      end_row();
    } else {
      if (field_was_quoted) {
        return absl::InvalidArgumentError(absl::StrCat("line ", line, ": text after a closing quote"));
      }
      field.push_back(c);
    }
  }
  if (in_quotes) return absl::InvalidArgumentError(absl::StrCat("line ", quote_line, ": unterminated quoted field"));
  if (!field.empty() || field_was_quoted || !row.empty()) end_row();
  return rows;
}

}  // namespace tern
