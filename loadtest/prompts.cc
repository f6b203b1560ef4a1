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
#include "runtime/base/delimited_text.h"

namespace tern::loadtest {
namespace {

constexpr std::array<absl::string_view, 5> kPromptFields = {"request", "prompt", "text", "question",
                                                           "instruction"};

bool IsBlank(absl::string_view s) { return absl::StripAsciiWhitespace(s).empty(); }

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
  absl::StatusOr<std::vector<std::vector<std::string>>> rows = SplitDelimitedText(content, ',');
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
