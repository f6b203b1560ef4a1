// Skeleton parsing (the paper's "N. text" rule, first occurrence wins) and
// the final answer's join, including the inputs models actually produce:
// prose around the list, CRLF, duplicates, odd numbering, huge numbers,
// non-ASCII text.
#include "runtime/sot/skeleton_parser.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tern::runtime {
namespace {

using Points = std::vector<SkeletonPoint>;

TEST(SkeletonParserTest, ReadsThePrefilledSkeleton) {
  EXPECT_EQ(ParseSkeleton(" 1. Remove distractions.\n2. Take breaks.\n3. Set goals."),
            (Points{{1, "Remove distractions."}, {2, "Take breaks."}, {3, "Set goals."}}));
}

TEST(SkeletonParserTest, EmptyAndPointlessInputsGiveNoPoints) {
  EXPECT_TRUE(ParseSkeleton("").empty());
  EXPECT_TRUE(ParseSkeleton("\n\n").empty());
  EXPECT_TRUE(ParseSkeleton("No list here, just prose.").empty());
  EXPECT_TRUE(ParseSkeleton(" 1.").empty());  // the bare pre-fill
}

TEST(SkeletonParserTest, IgnoresProseAroundTheList) {
  EXPECT_EQ(ParseSkeleton("Sure! Here is the skeleton:\n1. a\n2. b\n\nThese cover the 3. main ideas."),
            (Points{{1, "a"}, {2, "b"}}));
}

TEST(SkeletonParserTest, OnlyANumberAtTheStartOfALineStartsAPoint) {
  // The rest of the line belongs to the point, numbers included.
  EXPECT_EQ(ParseSkeleton("1. Python 3. basics 4. more\nsee step 2. next"),
            (Points{{1, "Python 3. basics 4. more"}}));
  // Leading spaces and tabs are fine.
  EXPECT_EQ(ParseSkeleton("   1. a\n\t2. b"), (Points{{1, "a"}, {2, "b"}}));
}

TEST(SkeletonParserTest, FirstOccurrenceWinsAndKeepsItsPlace) {
  EXPECT_EQ(ParseSkeleton("1. a\n3. c\n2. b\n1. again\n3. again"),
            (Points{{1, "a"}, {3, "c"}, {2, "b"}}));
}

TEST(SkeletonParserTest, OnlyNumberDotMarksAPoint) {
  EXPECT_TRUE(ParseSkeleton("1) a\n2 . b\n(3) c\n**4.** d\n- 5. e\n#6. f").empty());
  EXPECT_EQ(ParseSkeleton("1) a\n1. b"), (Points{{1, "b"}}));
}

TEST(SkeletonParserTest, DecimalsAreNotPoints) {
  EXPECT_TRUE(ParseSkeleton("3.14 is pi\n1.5 million people").empty());
  EXPECT_EQ(ParseSkeleton("1. 2.5 liters of water"), (Points{{1, "2.5 liters of water"}}));
}

TEST(SkeletonParserTest, WhitespaceAfterTheDotIsOptional) {
  EXPECT_EQ(ParseSkeleton("1.a\n2.\tb\n3.   c   "), (Points{{1, "a"}, {2, "b"}, {3, "c"}}));
}

TEST(SkeletonParserTest, NoNewlineAtTheEndAndCrlf) {
  EXPECT_EQ(ParseSkeleton(" 1. a\r\n2. b\r\n3. c"), (Points{{1, "a"}, {2, "b"}, {3, "c"}}));
  EXPECT_EQ(ParseSkeleton("1. a\r\n2. b\r\n"), (Points{{1, "a"}, {2, "b"}}));
}

TEST(SkeletonParserTest, EmptyTextIsNotAPointAndDoesNotClaimItsNumber) {
  EXPECT_EQ(ParseSkeleton(" 1.\n2. b\n1. a\n3.  \t\r\n4.\n"), (Points{{2, "b"}, {1, "a"}}));
}

TEST(SkeletonParserTest, HugeNumbersDoNotOverflow) {
  EXPECT_EQ(ParseSkeleton("2147483647. max\n2147483648. over\n99999999999999999999999. huge"),
            (Points{{2147483647, "max"}}));
  EXPECT_EQ(ParseSkeleton("007. bond\n0. zero\n0000000000000000000001. one"),
            (Points{{7, "bond"}, {0, "zero"}, {1, "one"}}));
  EXPECT_TRUE(ParseSkeleton(std::string(100000, '9') + ". x").empty());
}

TEST(SkeletonParserTest, NonAsciiTextPassesThroughAndPythonWhitespaceIsTrimmed) {
  EXPECT_EQ(ParseSkeleton("1. Grüße 🌍\n2.\u00a0日本語\u3000\n3. \u2003x\u2028"),
            (Points{{1, "Grüße 🌍"}, {2, "日本語"}, {3, "x"}}));
  // Invalid UTF-8 is kept byte for byte; full-width digits are not digits.
  EXPECT_EQ(ParseSkeleton("1. a\xff\xfe \n\xef\xbc\x92. two"), (Points{{1, "a\xff\xfe"}}));
}

TEST(SkeletonParserTest, LongInputsParseInLinearTime) {
  // A quadratic parser would not finish these.
  std::string skeleton;
  constexpr int kPoints = 200000;
  for (int i = 1; i <= kPoints; ++i) skeleton += std::to_string(i) + ". point\n";
  for (int i = 1; i <= kPoints; ++i) skeleton += std::to_string(i) + ". duplicate\n";
  skeleton += std::string(5'000'000, '7') + ". x\n" + std::string(5'000'000, ' ') + "y";
  const Points points = ParseSkeleton(skeleton);
  ASSERT_EQ(points.size(), static_cast<size_t>(kPoints));
  EXPECT_EQ(points.back(), (SkeletonPoint{kPoints, "point"}));
  EXPECT_EQ(ParseSkeleton(std::string(10'000'000, '\n')).size(), 0u);
}

TEST(SkeletonParserTest, FormatSkeletonIsCanonicalAndParsesBack) {
  const Points points = ParseSkeleton(" 1.  a \r\n3.b\n2. 4.5 c\nprose\n1. dup");
  EXPECT_EQ(FormatSkeleton(points), "1. a\n3. b\n2. 4.5 c");
  EXPECT_EQ(ParseSkeleton(FormatSkeleton(points)), points);
  EXPECT_EQ(FormatSkeleton({}), "");
}

TEST(SkeletonParserTest, StripPyWhitespaceFollowsPythonStrip) {
  EXPECT_EQ(StripPyWhitespace(" \t\r\n\v\f\x1c\xc2\x85\u00a0x y\u2003\u3000\u202f "), "x y");
  EXPECT_EQ(StripPyWhitespace("\u200bx"), "\u200bx");  // zero-width space is not whitespace
  EXPECT_EQ(StripPyWhitespace("\x85x\xc2"), "\x85x\xc2");  // invalid UTF-8 stays
  EXPECT_EQ(StripPyWhitespace("   "), "");
  EXPECT_EQ(StripPyWhitespace(""), "");
}

TEST(JoinPointsTest, JoinsAsThePapersBatchedScheduler) {
  // "<index>. <text>" + " " + expansion.strip(), points joined with "\n".
  const Points points = {{1, "Remove distractions."}, {3, "Set goals."}, {2, "Take breaks."}};
  EXPECT_EQ(JoinPoints(points, {" Turn off your phone.\n\n", "\u00a0Know what to finish.", ""}),
            "1. Remove distractions. Turn off your phone.\n"
            "3. Set goals. Know what to finish.\n"
            "2. Take breaks. ");
  EXPECT_EQ(JoinPoints({{1, "a"}}, {", b and c."}), "1. a , b and c.");
  EXPECT_EQ(JoinPoints({}, {}), "");
}

TEST(JoinPointsDeathTest, SizesMustMatch) {
  EXPECT_DEATH(JoinPoints({{1, "a"}}, {}), "");
}

}  // namespace
}  // namespace tern::runtime
