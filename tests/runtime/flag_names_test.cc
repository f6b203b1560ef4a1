#include "runtime/base/flag_names.h"

#include "gtest/gtest.h"

namespace tern::base {
namespace {

std::vector<std::string> Normalize(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  return NormalizeFlagDashes(static_cast<int>(argv.size()), argv.data());
}

TEST(FlagNamesTest, RewritesDashesInFlagNamesOnly) {
  EXPECT_EQ(Normalize({"ternd", "--grpc-port", "0", "--ports-file=/tmp/a-b", "-log-json"}),
            (std::vector<std::string>{"ternd", "--grpc_port", "0", "--ports_file=/tmp/a-b", "-log_json"}));
}

TEST(FlagNamesTest, LeavesValuesAndPositionalsAlone) {
  EXPECT_EQ(Normalize({"ternd", "--model", "my-model", "--", "--not-a-flag"}),
            (std::vector<std::string>{"ternd", "--model", "my-model", "--", "--not-a-flag"}));
}

TEST(FlagNamesTest, JoinsARepeatedListFlagWhereTheFirstStood) {
  using V = std::vector<std::string>;
  EXPECT_EQ(JoinRepeatedListFlag({"ternd", "--model", "a", "--grpc_port", "0", "--model=b,c", "--model", "d"}, "model"),
            (V{"ternd", "--model=a,b,c,d", "--grpc_port", "0"}));
  EXPECT_EQ(JoinRepeatedListFlag({"ternd", "--model=a"}, "model"), (V{"ternd", "--model=a"}));
  EXPECT_EQ(JoinRepeatedListFlag({"ternd", "--models", "x", "--config", "f"}, "model"),
            (V{"ternd", "--models", "x", "--config", "f"}));
  // A value-less last flag is Abseil's to report; after "--" nothing is a flag.
  EXPECT_EQ(JoinRepeatedListFlag({"ternd", "--model", "a", "--model"}, "model"), (V{"ternd", "--model=a", "--model"}));
  EXPECT_EQ(JoinRepeatedListFlag({"ternd", "--", "--model", "a"}, "model"), (V{"ternd", "--", "--model", "a"}));
}

}  // namespace
}  // namespace tern::base
