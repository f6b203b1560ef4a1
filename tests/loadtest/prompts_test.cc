#include "loadtest/prompts.h"

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace tern::loadtest {
namespace {

using ::testing::TempDir;

std::string PromptsDir() { return TERN_LOADTEST_PROMPTS_DIR; }

TEST(PromptsTest, TextSkipsBlankLinesAndCarriageReturns) {
  EXPECT_EQ(ParseTextPrompts("one\r\n\n  \ntwo words\nthree"),
            (std::vector<std::string>{"one", "two words", "three"}));
  EXPECT_TRUE(ParseTextPrompts("").empty());
}

TEST(PromptsTest, CsvQuotedFieldsKeepCommasQuotesAndNewlines) {
  const absl::StatusOr<std::vector<std::string>> p = ParseCsvPrompts(
      "id,prompt\r\n"
      "1,plain\r\n"
      "2,\"with, comma\"\r\n"
      "3,\"say \"\"hi\"\"\"\r\n"
      "4,\"two\r\nlines\"\n"
      "5,\n"
      "\n"
      "6,last");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(*p, (std::vector<std::string>{"plain", "with, comma", "say \"hi\"", "two\nlines", "last"}));
}

TEST(PromptsTest, CsvPicksKnownColumnNamesOrTheOnlyColumn) {
  EXPECT_EQ(*ParseCsvPrompts("Question,answer\nq1,a1\n"), std::vector<std::string>{"q1"});
  EXPECT_EQ(*ParseCsvPrompts("anything\nx\ny\n"), (std::vector<std::string>{"x", "y"}));
  const absl::StatusOr<std::vector<std::string>> none = ParseCsvPrompts("a,b\n1,2\n");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(std::string(none.status().message()).find("\"a\", \"b\""), std::string::npos);
}

TEST(PromptsTest, CsvErrorsNameTheLine) {
  const absl::StatusOr<std::vector<std::string>> open = ParseCsvPrompts("request\nok\n\"never closed\nmore\n");
  ASSERT_FALSE(open.ok());
  EXPECT_NE(std::string(open.status().message()).find("line 3"), std::string::npos) << open.status();
  EXPECT_FALSE(ParseCsvPrompts("request\nab\"c\n").ok());
  EXPECT_FALSE(ParseCsvPrompts("request\n\"a\"b\n").ok());
  const absl::StatusOr<std::vector<std::string>> short_row = ParseCsvPrompts("id,prompt\n1,a\n2\n");
  ASSERT_FALSE(short_row.ok());
  EXPECT_NE(std::string(short_row.status().message()).find("row 3"), std::string::npos);
  EXPECT_FALSE(ParseCsvPrompts("").ok());
}

TEST(PromptsTest, JsonlAcceptsStringsAndObjects) {
  const absl::StatusOr<std::vector<std::string>> p = ParseJsonlPrompts(
      "{\"prompt\": \"a\\nb\", \"id\": 1}\n"
      "\n"
      "\"bare string\"\n"
      "{\"text\": \"from text\"}\r\n"
      "{\"instruction\": \"do it\", \"output\": \"x\"}\n");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(*p, (std::vector<std::string>{"a\nb", "bare string", "from text", "do it"}));
}

TEST(PromptsTest, JsonlErrorsNameTheLine) {
  const absl::StatusOr<std::vector<std::string>> bad = ParseJsonlPrompts("\"ok\"\n{not json}\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("line 2"), std::string::npos);
  const absl::StatusOr<std::vector<std::string>> no_field = ParseJsonlPrompts("{\"prompt\": 3}\n");
  ASSERT_FALSE(no_field.ok());
  EXPECT_NE(std::string(no_field.status().message()).find("line 1"), std::string::npos);
}

TEST(PromptsTest, FormatFollowsTheExtension) {
  EXPECT_EQ(FormatFromPath("a/b.CSV"), PromptFormat::kCsv);
  EXPECT_EQ(FormatFromPath("x.jsonl"), PromptFormat::kJsonl);
  EXPECT_EQ(FormatFromPath("x.ndjson"), PromptFormat::kJsonl);
  EXPECT_EQ(FormatFromPath("x.txt"), PromptFormat::kText);
  EXPECT_EQ(FormatFromPath("prompts"), PromptFormat::kText);
}

TEST(PromptsTest, LoadsVicuna80) {
  const absl::StatusOr<std::vector<std::string>> p = LoadPrompts(PromptsDir() + "/vicuna80.csv", PromptFormat::kAuto);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->size(), 80u);
  EXPECT_EQ(p->front(), "How can I improve my time management skills?");
  // Line 17 of the file is quoted because it holds a comma.
  EXPECT_EQ((*p)[15],
            "Explain the process of gene editing using CRISPR-Cas9 technology, and discuss its potential "
            "applications and ethical implications.");
  for (const std::string& prompt : *p) {
    EXPECT_EQ(prompt.find('\r'), std::string::npos);
    EXPECT_NE(prompt.front(), '"');
  }
}

TEST(PromptsTest, LoadsLimaWithMultilinePromptsAndEscapedQuotes) {
  const absl::StatusOr<std::vector<std::string>> p = LoadPrompts(PromptsDir() + "/lima.csv", PromptFormat::kAuto);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->size(), 1030u);
  EXPECT_EQ(p->front(),
            "Can brain cells move? By movement I mean long distance migration (preferably within the brain only).");
  EXPECT_EQ((*p)[4].rfind("Explain what \"git reset\" does. I come from a SVN background", 0), 0u) << (*p)[4];
  size_t multiline = 0;
  for (const std::string& prompt : *p) multiline += prompt.find('\n') != std::string::npos;
  EXPECT_EQ(multiline, 265u);  // as Python's csv module reads the file
  EXPECT_EQ(p->back(), "Why aren't python nested functions called closures?");
}

TEST(PromptsTest, LoadReportsMissingAndEmptyFiles) {
  EXPECT_EQ(LoadPrompts("/nonexistent/prompts.txt", PromptFormat::kAuto).status().code(),
            absl::StatusCode::kNotFound);
  const std::string empty = TempDir() + "/empty_prompts.txt";
  std::ofstream(empty) << "\n\n";
  const absl::StatusOr<std::vector<std::string>> none = LoadPrompts(empty, PromptFormat::kAuto);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(std::string(none.status().message()).find("no prompts"), std::string::npos);
  // An explicit format overrides the extension.
  const std::string jsonl = TempDir() + "/prompts.txt";
  std::ofstream(jsonl) << "{\"prompt\": \"p\"}\n";
  EXPECT_EQ(*LoadPrompts(jsonl, PromptFormat::kJsonl), std::vector<std::string>{"p"});
  EXPECT_EQ(*LoadPrompts(jsonl, PromptFormat::kAuto), std::vector<std::string>{"{\"prompt\": \"p\"}"});
}

}  // namespace
}  // namespace tern::loadtest
