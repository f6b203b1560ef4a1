// The flag values the tern-* tools share (tools/common/tool_flags.h): class
// label ranges and lists, and lists of positive integers.
#include "tools/common/tool_flags.h"

#include "gtest/gtest.h"

namespace tern::tools {
namespace {

TEST(ToolFlagsTest, ClassListsAreRangesOrLists) {
  EXPECT_EQ(ParseClassList("3-6"), (std::vector<int32_t>{3, 4, 5, 6}));
  EXPECT_EQ(ParseClassList("7,2,7"), (std::vector<int32_t>{7, 2, 7}));
  EXPECT_EQ(ParseClassList("5"), (std::vector<int32_t>{5}));
  EXPECT_EQ(ParseClassList("6-3"), std::nullopt);
  EXPECT_EQ(ParseClassList(""), std::nullopt);
  EXPECT_EQ(ParseClassList("1,x"), std::nullopt);
}

TEST(ToolFlagsTest, PositiveListsRefuseAnythingElse) {
  EXPECT_EQ(ParsePositiveList("1,8,64"), (std::vector<int64_t>{1, 8, 64}));
  EXPECT_EQ(ParsePositiveList("250"), (std::vector<int64_t>{250}));
  for (const char* bad : {"", "0", "-4", "1,,2", "8,x", "1.5", "2,"}) {
    EXPECT_EQ(ParsePositiveList(bad), std::nullopt) << bad;
  }
}

}  // namespace
}  // namespace tern::tools
