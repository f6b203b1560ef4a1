#include "runtime/sampling/stop_checker.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tern::runtime {
namespace {

constexpr int32_t kEos = 2;
constexpr int32_t kText = 100;  // an ordinary token id

SamplingParams WithStops(std::vector<std::string> stops) {
  SamplingParams params;
  params.stop = std::move(stops);
  return params;
}

// Feeds `pieces` as ordinary tokens; returns each update's text and the last update.
std::vector<std::string> Feed(StopChecker& checker, const std::vector<std::string>& pieces,
                              StopUpdate* last) {
  std::vector<std::string> out;
  for (const std::string& piece : pieces) {
    *last = checker.Append(kText, piece);
    out.push_back(last->text);
    if (checker.finished()) break;
  }
  return out;
}

TEST(StopCheckerTest, PassesTextThroughWithoutStopStrings) {
  StopChecker checker(SamplingParams(), {kEos});
  StopUpdate last;
  EXPECT_EQ(Feed(checker, {"Hello", ", ", "world"}, &last),
            (std::vector<std::string>{"Hello", ", ", "world"}));
  EXPECT_EQ(last.finish_reason, FinishReason::kNone);
  EXPECT_FALSE(checker.finished());
  EXPECT_EQ(checker.num_tokens(), 3);
}

TEST(StopCheckerTest, StopStringSplitOverTwoTokens) {
  StopChecker checker(WithStops({"END"}), {kEos});
  StopUpdate last;
  EXPECT_EQ(Feed(checker, {"foo E", "ND bar"}, &last), (std::vector<std::string>{"foo ", ""}));
  EXPECT_EQ(last.finish_reason, FinishReason::kStop);
  EXPECT_EQ(std::get<std::string>(last.stop_reason), "END");
  EXPECT_TRUE(checker.finished());
}

TEST(StopCheckerTest, StopStringSplitOverThreeTokens) {
  StopChecker checker(WithStops({"</answer>"}), {kEos});
  StopUpdate last;
  EXPECT_EQ(Feed(checker, {"42</", "ans", "wer>tail"}, &last),
            (std::vector<std::string>{"42", "", ""}));
  EXPECT_EQ(last.finish_reason, FinishReason::kStop);
  EXPECT_EQ(std::get<std::string>(last.stop_reason), "</answer>");
}

TEST(StopCheckerTest, HeldTextIsReleasedWhenItStopsMatching) {
  StopChecker checker(WithStops({"END"}), {kEos});
  StopUpdate last;
  EXPECT_EQ(Feed(checker, {"E", "N", "X", "E"}, &last),
            (std::vector<std::string>{"", "", "ENX", ""}));
  EXPECT_EQ(checker.held_back_bytes(), 1u);
  EXPECT_EQ(checker.Flush(), "E");
  EXPECT_TRUE(checker.finished());
}

TEST(StopCheckerTest, OverlappingStopStrings) {
  StopChecker checker(WithStops({"abcd", "bcx"}), {kEos});
  StopUpdate last;
  EXPECT_EQ(Feed(checker, {"a", "b", "c", "x"}, &last), (std::vector<std::string>{"", "", "", "a"}));
  EXPECT_EQ(std::get<std::string>(last.stop_reason), "bcx");
}

TEST(StopCheckerTest, FirstStopStringToCompleteWins) {
  StopChecker checker(WithStops({"abc", "b"}), {kEos});
  const StopUpdate update = checker.Append(kText, "xabc");
  EXPECT_EQ(update.text, "xa");
  EXPECT_EQ(std::get<std::string>(update.stop_reason), "b");
}

TEST(StopCheckerTest, AtEqualEndsTheEarlierStartWins) {
  StopChecker checker(WithStops({"bc", "abc"}), {kEos});
  const StopUpdate update = checker.Append(kText, "zabcz");
  EXPECT_EQ(update.text, "z");
  EXPECT_EQ(std::get<std::string>(update.stop_reason), "abc");
}

TEST(StopCheckerTest, SelfOverlappingPrefixHoldsOnlyWhatCouldMatch) {
  StopChecker checker(WithStops({"aab"}), {kEos});
  StopUpdate last;
  EXPECT_EQ(Feed(checker, {"a", "a", "a", "b"}, &last), (std::vector<std::string>{"", "", "a", ""}));
  EXPECT_EQ(last.finish_reason, FinishReason::kStop);
}

TEST(StopCheckerTest, UnicodeStopStrings) {
  StopChecker checker(WithStops({"世界"}), {kEos});
  StopUpdate last;
  EXPECT_EQ(Feed(checker, {"你好", "世", "界!"}, &last), (std::vector<std::string>{"你好", "", ""}));
  EXPECT_EQ(std::get<std::string>(last.stop_reason), "世界");
}

TEST(StopCheckerTest, UnicodeHoldBackKeepsWholeCharacters) {
  StopChecker checker(WithStops({"é!", "🙂x"}), {kEos});
  StopUpdate last;
  // "é" and "🙂" are held whole; released whole once they cannot match.
  EXPECT_EQ(Feed(checker, {"café", "s a🙂", "🙂", "y"}, &last),
            (std::vector<std::string>{"caf", "és a", "🙂", "🙂y"}));
  EXPECT_EQ(last.finish_reason, FinishReason::kNone);
}

TEST(StopCheckerTest, EosStopsWithoutItsText) {
  StopChecker checker(WithStops({"END"}), {kEos, 7});
  EXPECT_EQ(checker.Append(kText, "ok E").text, "ok ");
  const StopUpdate update = checker.Append(7, "</s>");
  EXPECT_EQ(update.text, "E");  // held text is released, the EOS text is not
  EXPECT_EQ(update.finish_reason, FinishReason::kStop);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(update.stop_reason));
}

TEST(StopCheckerTest, IgnoreEosKeepsGoing) {
  SamplingParams params;
  params.ignore_eos = true;
  StopChecker checker(params, {kEos});
  const StopUpdate update = checker.Append(kEos, "");
  EXPECT_EQ(update.finish_reason, FinishReason::kNone);
  EXPECT_FALSE(checker.finished());
}

TEST(StopCheckerTest, StopTokenIdReportsTheId) {
  SamplingParams params;
  params.stop_token_ids = {13, 50};
  params.ignore_eos = true;  // stop token ids still apply
  StopChecker checker(params, {kEos});
  EXPECT_EQ(checker.Append(kText, "a").text, "a");
  const StopUpdate update = checker.Append(50, "\n");
  EXPECT_EQ(update.text, "");
  EXPECT_EQ(update.finish_reason, FinishReason::kStop);
  EXPECT_EQ(std::get<int32_t>(update.stop_reason), 50);
}

TEST(StopCheckerTest, MaxTokensFinishesWithLengthAndReleasesEverything) {
  SamplingParams params = WithStops({"END"});
  params.max_tokens = 3;
  StopChecker checker(params, {kEos});
  StopUpdate last;
  EXPECT_EQ(Feed(checker, {"a", "b", "cE", "never"}, &last),
            (std::vector<std::string>{"a", "b", "cE"}));
  EXPECT_EQ(last.finish_reason, FinishReason::kLength);
  EXPECT_TRUE(std::holds_alternative<std::monostate>(last.stop_reason));
  EXPECT_EQ(checker.num_tokens(), 3);
}

TEST(StopCheckerTest, StopStringOnTheLastTokenBeatsLength) {
  SamplingParams params = WithStops({"END"});
  params.max_tokens = 2;
  StopChecker checker(params, {kEos});
  StopUpdate last;
  EXPECT_EQ(Feed(checker, {"xE", "NDy"}, &last), (std::vector<std::string>{"x", ""}));
  EXPECT_EQ(last.finish_reason, FinishReason::kStop);
  EXPECT_EQ(std::get<std::string>(last.stop_reason), "END");
}

TEST(StopCheckerTest, EmptyTextPiecesAreFine) {
  StopChecker checker(WithStops({"ab"}), {kEos});
  StopUpdate last;
  EXPECT_EQ(Feed(checker, {"", "a", "", "b"}, &last), (std::vector<std::string>{"", "", "", ""}));
  EXPECT_EQ(last.finish_reason, FinishReason::kStop);
}

// The text the whole output should give: everything before the first stop
// string to complete (earliest end, then earliest start).
std::string Reference(const std::string& text, const std::vector<std::string>& stops,
                      bool* stopped) {
  for (size_t end = 1; end <= text.size(); ++end) {
    size_t best_start = std::string::npos;
    for (const std::string& s : stops) {
      if (s.size() <= end && text.compare(end - s.size(), s.size(), s) == 0) {
        best_start = std::min(best_start, end - s.size());
      }
    }
    if (best_start != std::string::npos) {
      *stopped = true;
      return text.substr(0, best_start);
    }
  }
  *stopped = false;
  return text;
}

// Random texts over a small alphabet, cut into random token pieces: what is
// released is always a prefix of the reference answer (no partial stop string
// ever escapes) and, with the final flush, equals it.
TEST(StopCheckerTest, RandomSplitsMatchTheWholeTextReference) {
  const std::vector<std::string> stops = {"abc", "bca", "cc", "abab"};
  std::mt19937 rng(12345);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string text;
    const int length = 1 + static_cast<int>(rng() % 30);
    for (int i = 0; i < length; ++i) text.push_back("abcd"[rng() % 4]);
    bool stopped = false;
    const std::string expected = Reference(text, stops, &stopped);

    StopChecker checker(WithStops(stops), {kEos});
    std::string released;
    size_t pos = 0;
    while (pos < text.size() && !checker.finished()) {
      const size_t piece = std::min<size_t>(text.size() - pos, rng() % 4);
      released += checker.Append(kText, absl::string_view(text).substr(pos, piece)).text;
      ASSERT_EQ(expected.compare(0, released.size(), released), 0)
          << "released '" << released << "' is not a prefix of '" << expected << "' in '"
          << text << "'";
      pos += piece;
    }
    EXPECT_EQ(checker.finished(), stopped) << text;
    if (!checker.finished()) released += checker.Flush();
    EXPECT_EQ(released, expected) << text;
  }
}

TEST(StopCheckerDeathTest, AppendAfterFinishIsABug) {
  SamplingParams params;
  params.max_tokens = 1;
  StopChecker checker(params, {kEos});
  checker.Append(kText, "x");
  EXPECT_DEATH(checker.Append(kText, "y"), "");  // spdlog reports on stdout
}

}  // namespace
}  // namespace tern::runtime
