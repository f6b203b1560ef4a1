#include "loadtest/prompts.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace tern::loadtest {
namespace {

constexpr std::array<absl::string_view, 5> kPromptFields = {"request", "prompt", "text", "question",
                                                           "instruction"};

bool IsBlank(absl::string_view s) { return absl::StripAsciiWhitespace(s).empty(); }

// Splits RFC 4180 CSV into rows of fields. Accepts LF and CRLF; a quoted
// field keeps its embedded line breaks (CRLF inside quotes becomes LF).
absl::StatusOr<std::vector<std::vector<std::string>>> SplitCsv(absl::string_view in) {
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
    // A blank line between rows is not a row.
    if (!(row.size() == 1 && row[0].empty())) rows.push_back(std::move(row));
    row.clear();
  };
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (in_quotes) {
      if (c == '"') {
        if (i + 1 < in.size() && in[i + 1] == '"') {
          field.push_back('"');
          ++i;
        } else {
          in_quotes = false;
        }
      } else if (c == '\r' && i + 1 < in.size() && in[i + 1] == '\n') {
        // CRLF inside a field: keep one '\n'.
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
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
      field_was_quoted = false;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < in.size() && in[i + 1] == '\n') ++i;
      ++line;
      end_row();
    } else {
      if (field_was_quoted) {
        return absl::InvalidArgumentError(absl::StrCat("line ", line, ": text after a closing quote"));
      }
      field.push_back(c);
    }
  }
  if (in_quotes) {
    return absl::InvalidArgumentError(absl::StrCat("line ", quote_line, ": unterminated quoted field"));
  }
  if (!field.empty() || field_was_quoted || !row.empty()) end_row();
  return rows;
}

}  // namespace

PromptFormat FormatFromPath(const std::string& path) {
  const std::string lower = absl::AsciiStrToLower(path);
  if (absl::EndsWith(lower, ".csv")) return PromptFormat::kCsv;
  if (absl::EndsWith(lower, ".jsonl") || absl::EndsWith(lower, ".ndjson")) return PromptFormat::kJsonl;
  return PromptFormat::kText;
}

std::vector<std::string> ParseTextPrompts(absl::string_view content) {
  std::vector<std::string> prompts;
  size_t start = 0;
  while (start <= content.size()) {
    size_t end = content.find('\n', start);
    if (end == absl::string_view::npos) end = content.size();
    absl::string_view line = content.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!IsBlank(line)) prompts.emplace_back(line);
    start = end + 1;
  }
  return prompts;
}

absl::StatusOr<std::vector<std::string>> ParseCsvPrompts(absl::string_view content) {
  absl::StatusOr<std::vector<std::vector<std::string>>> rows = SplitCsv(content);
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return absl::InvalidArgumentError("no header row");
  const std::vector<std::string>& header = rows->front();
  size_t column = header.size();
  for (absl::string_view want : kPromptFields) {
    for (size_t i = 0; i < header.size() && column == header.size(); ++i) {
      if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(header[i]), want)) column = i;
    }
    if (column != header.size()) break;
  }
  if (column == header.size() && header.size() == 1) column = 0;
  if (column == header.size()) {
    std::string names;
    for (const auto& name : header) absl::StrAppend(&names, names.empty() ? "" : ", ", "\"", name, "\"");
    return absl::InvalidArgumentError(
        "no request/prompt/text/question/instruction column in the header (" + names + ")");
  }
  std::vector<std::string> prompts;
  for (size_t r = 1; r < rows->size(); ++r) {
    const std::vector<std::string>& row = (*rows)[r];
    if (row.size() <= column) {
      return absl::InvalidArgumentError(absl::StrCat("row ", r + 1, " has ", row.size(),
                                                     " field(s), the prompt is column ", column + 1));
    }
    if (!IsBlank(row[column])) prompts.push_back(row[column]);
  }
  return prompts;
}

absl::StatusOr<std::vector<std::string>> ParseJsonlPrompts(absl::string_view content) {
  std::vector<std::string> prompts;
  int line_number = 0;
  size_t start = 0;
  while (start < content.size()) {
    size_t end = content.find('\n', start);
    if (end == absl::string_view::npos) end = content.size();
    const absl::string_view line = content.substr(start, end - start);
    start = end + 1;
    ++line_number;
    if (IsBlank(line)) continue;
    const nlohmann::json value = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
    if (value.is_discarded()) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_number, ": not valid JSON"));
    }
    if (value.is_string()) {
      prompts.push_back(value.get<std::string>());
      continue;
    }
    bool found = false;
    if (value.is_object()) {
      for (absl::string_view field : kPromptFields) {
        const auto it = value.find(std::string(field));
        if (it != value.end() && it->is_string()) {
          prompts.push_back(it->get<std::string>());
          found = true;
          break;
        }
      }
    }
    if (!found) {
      return absl::InvalidArgumentError(absl::StrCat(
          "line ", line_number, ": expected a string or an object with a string prompt/text/request field"));
    }
    if (IsBlank(prompts.back())) prompts.pop_back();
  }
  return prompts;
}

absl::StatusOr<std::vector<std::string>> LoadPrompts(const std::string& path, PromptFormat format) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot open prompts file " + path);
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) return absl::DataLossError("cannot read prompts file " + path);
  const std::string text = content.str();
  if (format == PromptFormat::kAuto) format = FormatFromPath(path);
  absl::StatusOr<std::vector<std::string>> prompts;
  switch (format) {
    case PromptFormat::kCsv:
      prompts = ParseCsvPrompts(text);
      break;
    case PromptFormat::kJsonl:
      prompts = ParseJsonlPrompts(text);
      break;
    case PromptFormat::kText:
    case PromptFormat::kAuto:
      prompts = ParseTextPrompts(text);
      break;
  }
  if (!prompts.ok()) return absl::InvalidArgumentError(path + ": " + std::string(prompts.status().message()));
  if (prompts->empty()) return absl::InvalidArgumentError(path + ": no prompts");
  return prompts;
}

}  // namespace tern::loadtest
