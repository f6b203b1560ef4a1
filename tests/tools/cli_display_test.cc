// The terminal side of tern generate/chat: fitting model text into one line
// and the live Skeleton-of-Thought view.
#include <cstdio>
#include <cstdlib>

#include "gtest/gtest.h"
#include "tools/cli/live_frame.h"
#include "tools/cli/live_region.h"
#include "tools/cli/text_fit.h"

namespace tern::cli {
namespace {

// The visible text of a frame line: ANSI escape sequences removed.
std::string Visible(const std::string& line) {
  std::string out;
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '\x1b') {
      while (i < line.size() && !(line[i] >= 'A' && line[i] <= 'z' && line[i] != '[')) ++i;
      continue;
    }
    out += line[i];
  }
  return out;
}

tern::v1::GenerateResponse Chunk(tern::v1::ChoicePart part, int index, const std::string& text,
                                 bool last = false) {
  tern::v1::GenerateResponse r;
  tern::v1::Choice* c = r.add_choices();
  c->set_part(part);
  c->set_index(index);
  c->set_text(text);
  c->add_token_ids(7);
  if (last) c->set_finish_reason(tern::v1::FINISH_REASON_STOP);
  return r;
}

TEST(TextFitTest, OneLineDisarmsControlCharacters) {
  EXPECT_EQ(OneLine("a\tb\nc\rd"), "a b c d");
  EXPECT_EQ(OneLine("x\x1b[2Jy\x07z\x7f"), "x?[2Jy?z?");
  EXPECT_EQ(OneLine("caf\xC3\xA9 \xE2\x9C\x93"), "caf\xC3\xA9 \xE2\x9C\x93");  // valid UTF-8 kept
  EXPECT_EQ(OneLine("bad \xC3 byte \xC2\x85"), "bad ? byte ?");               // truncated, then C1 NEL
}

TEST(TextFitTest, FitsByColumnsAtCodePointBoundaries) {
  EXPECT_EQ(FitHead("hello", 5), "hello");
  EXPECT_EQ(FitHead("hello world", 6), "hello\xE2\x80\xA6");
  EXPECT_EQ(FitTail("hello world", 6), "\xE2\x80\xA6world");
  EXPECT_EQ(DisplayColumns("\xE4\xBD\xA0\xE5\xA5\xBD"), 4);  // two wide CJK characters
  const std::string cjk = "\xE4\xBD\xA0\xE5\xA5\xBD\xE4\xB8\x96\xE7\x95\x8C";  // 4 characters, 8 columns
  EXPECT_EQ(FitHead(cjk, 6), "\xE4\xBD\xA0\xE5\xA5\xBD\xE2\x80\xA6");          // 2 wide + "…" = 5 columns
  EXPECT_LE(DisplayColumns(FitTail(cjk, 6)), 6);
  EXPECT_EQ(FitHead("abc", 0), "");
}

TEST(LiveFrameTest, ShowsTheSkeletonWhileItStreams) {
  StreamAssembly s(Clock::now());
  s.Add(Chunk(tern::v1::CHOICE_PART_SKELETON, 0, "1. Boil water\n2. Add tea"), Clock::now());
  const std::vector<std::string> lines = LiveFrame(s, {}, FrameSize{40, 24});
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_NE(Visible(lines[0]).find("writing the skeleton"), std::string::npos);
  EXPECT_EQ(Visible(lines[1]), "1. Boil water");
  EXPECT_EQ(Visible(lines[2]), "2. Add tea");
  EXPECT_EQ(SkeletonPointTexts("1. Boil water\n 2.Add tea\nnot a point\n3."),
            (std::vector<std::string>{"Boil water", "Add tea", ""}));
}

TEST(LiveFrameTest, PointSlotsFillInAndNeverWrap) {
  StreamAssembly s(Clock::now());
  s.Add(Chunk(tern::v1::CHOICE_PART_SKELETON, 0, "1. Boil water\n2. Add tea\n3. Wait", true), Clock::now());
  s.Add(Chunk(tern::v1::CHOICE_PART_POINT, 1, "2. Add tea Use one spoon of leaves per cup, more for a stronger brew"),
        Clock::now());
  s.Add(Chunk(tern::v1::CHOICE_PART_POINT, 0, "1. Boil water Bring it to a boil.", true), Clock::now());
  const std::vector<std::string> lines = LiveFrame(s, {}, FrameSize{40, 24});
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_NE(Visible(lines[0]).find("1 of 3 points done"), std::string::npos) << lines[0];
  EXPECT_EQ(Visible(lines[1]).rfind("\xE2\x9C\x93 1. Boil water", 0), 0u) << lines[1];  // done: its beginning
  EXPECT_EQ(Visible(lines[2]).rfind("\xE2\x80\xBA 2. \xE2\x80\xA6", 0), 0u) << lines[2];  // active: its newest text
  EXPECT_NE(Visible(lines[2]).find("stronger brew"), std::string::npos) << lines[2];
  EXPECT_EQ(Visible(lines[3]), "  3. Wait");  // pending: the skeleton's label
  for (const std::string& line : lines) EXPECT_LE(DisplayColumns(Visible(line)), 39) << line;
}

TEST(LiveFrameTest, ManyPointsStayWithinTheTerminalHeight) {
  StreamAssembly s(Clock::now());
  std::vector<std::string> outline;
  for (int i = 0; i < 30; ++i) outline.push_back("point " + std::to_string(i + 1));
  s.Add(Chunk(tern::v1::CHOICE_PART_POINT, 29, "30. point 30 text"), Clock::now());
  const std::vector<std::string> lines = LiveFrame(s, outline, FrameSize{60, 10});
  ASSERT_EQ(lines.size(), 9u);  // rows - 1
  EXPECT_NE(Visible(lines[0]).find("0 of 30 points done"), std::string::npos);
  EXPECT_EQ(Visible(lines[1]), "  1. point 1");
  EXPECT_NE(Visible(lines[8]).find("and 23 more"), std::string::npos) << lines[8];

  // Once the first points are done, the window moves on to the unfinished ones.
  for (int i = 0; i < 10; ++i) {
    s.Add(Chunk(tern::v1::CHOICE_PART_POINT, i, std::to_string(i + 1) + ". point " + std::to_string(i + 1), true),
          Clock::now());
  }
  const std::vector<std::string> later = LiveFrame(s, outline, FrameSize{60, 10});
  ASSERT_EQ(later.size(), 9u);
  EXPECT_NE(Visible(later[0]).find("10 of 30 points done"), std::string::npos) << later[0];
  EXPECT_EQ(Visible(later[1]), "  11. point 11");
  EXPECT_NE(Visible(later[8]).find("and 13 more"), std::string::npos) << later[8];
  // All done: the last points stay in view.
  for (int i = 10; i < 30; ++i) {
    s.Add(Chunk(tern::v1::CHOICE_PART_POINT, i, std::to_string(i + 1) + ". point " + std::to_string(i + 1), true),
          Clock::now());
  }
  const std::vector<std::string> done = LiveFrame(s, outline, FrameSize{60, 10});
  ASSERT_EQ(done.size(), 8u);
  EXPECT_EQ(Visible(done.back()).rfind("\xE2\x9C\x93 30. point 30", 0), 0u) << done.back();
}

TEST(LiveRegionTest, RedrawsInPlaceAndClears) {
  char* buffer = nullptr;
  size_t size = 0;
  std::FILE* out = open_memstream(&buffer, &size);
  ASSERT_NE(out, nullptr);
  {
    LiveRegion region(out);
    region.Draw({"a", "b"});
    region.Draw({"c"});
    region.Clear();
    EXPECT_TRUE(region.empty());
    region.Clear();  // nothing drawn: nothing written
  }
  std::fclose(out);
  EXPECT_EQ(std::string(buffer, size), "a\nb\n\r\x1b[2A\x1b[Jc\n\r\x1b[1A\x1b[J");
  std::free(buffer);
}

}  // namespace
}  // namespace tern::cli
