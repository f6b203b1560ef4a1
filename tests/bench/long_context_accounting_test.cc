#include "bench/long_context_accounting.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/model/moa_plan.h"
#include "scheduler/engine_impl.h"

namespace tern::bench {
namespace {

using runtime::KvCacheDtype;
using runtime::KvRetention;

TEST(LongContextAccountingTest, DenseBlocksAreTheEnginesCountForEverySplitOfTheContext) {
  for (const int32_t context : {2, 16, 17, 160, 8192, 16384, 16385}) {
    for (const int32_t max_tokens : {1, 7, context / 2, context - 1}) {
      if (max_tokens < 1 || max_tokens >= context) continue;
      const int32_t prompt = context - max_tokens;
      EXPECT_EQ(BlocksPerSequence(context, 16, 2048, nullptr),
                scheduler::KvBlocksAtLongest(prompt, max_tokens, 1, 16))
          << "context " << context << " max_tokens " << max_tokens;
    }
  }
}

TEST(LongContextAccountingTest, RetentionCountsThePeakWhenItIsSmaller) {
  const KvRetention window = KvRetention::SlidingWindow(64, 1024);
  const runtime::KvCacheGroups one = runtime::KvCacheGroups::Single(4, window);
  // 1023 positions written: 64 dense blocks; a 64-token window in 128-token
  // chunks holds far fewer.
  const int64_t peak = window.PeakBlocks(1023, 16, 128);
  EXPECT_LT(peak, 64);
  EXPECT_EQ(BlocksPerSequence(1024, 16, 128, &one), peak);
  // Tokens that never leave the window: the dense count.
  EXPECT_EQ(BlocksPerSequence(40, 16, 128, &one), 3);
  // Two groups, one windowed and one keeping every token: each counted.
  runtime::KvCacheGroups hybrid;
  hybrid.layer_group = {0, 1, 0, 1};
  hybrid.retention.emplace_back(window);
  hybrid.retention.emplace_back(std::nullopt);
  EXPECT_EQ(BlocksPerSequence(1024, 16, 128, &hybrid), peak + 64);
}

TEST(LongContextAccountingTest, PlanFillsTheCacheAndKeepsEverySequenceDecodingPastTheLastPrompt) {
  auto run = PlanLongContextRun(/*num_blocks=*/105, /*context=*/160, 16, /*max_num_batched_tokens=*/64,
                                /*max_num_seqs=*/256, /*decode_steps=*/8, nullptr);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->blocks_per_seq, 10);
  EXPECT_EQ(run->num_seqs, 10);
  // 10 x 160 prompt-or-output tokens at 64 - 10 a step: 30 steps, one partial step each.
  EXPECT_EQ(run->prefill_steps, 30 + 10);
  EXPECT_EQ(run->max_tokens, 40 + kGraphWarmSteps + 8 + 1);
  EXPECT_EQ(run->prompt_tokens + run->max_tokens, 160);
}

TEST(LongContextAccountingTest, PlanHonoursTheSequenceLimit) {
  auto run = PlanLongContextRun(1000, 160, 16, 2048, /*max_num_seqs=*/7, 8, nullptr);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->num_seqs, 7);
}

TEST(LongContextAccountingTest, PlanRefusesWhatCannotRun) {
  auto small = PlanLongContextRun(9, 160, 16, 64, 256, 8, nullptr);
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(small.status().message().find("holds 10 KV blocks"), std::string::npos) << small.status();

  auto budget = PlanLongContextRun(1000, 160, 16, /*max_num_batched_tokens=*/100, 256, 8, nullptr);
  ASSERT_FALSE(budget.ok());
  EXPECT_NE(budget.status().message().find("step budget"), std::string::npos) << budget.status();

  auto no_prompt = PlanLongContextRun(1000, 160, 16, 2048, 256, /*decode_steps=*/200, nullptr);
  ASSERT_FALSE(no_prompt.ok());
  EXPECT_NE(no_prompt.status().message().find("leaves no prompt"), std::string::npos) << no_prompt.status();

  EXPECT_FALSE(PlanLongContextRun(1000, 1, 16, 2048, 256, 8, nullptr).ok());
  EXPECT_FALSE(PlanLongContextRun(1000, 160, 16, 2048, 256, 0, nullptr).ok());
}

TEST(LongContextAccountingTest, SteadyWindowCountsOnlyTokensWhileEverySequenceDecodes) {
  std::vector<double> a, b;
  for (int t = 1; t <= 10; ++t) a.push_back(t);   // decodes from 1 to 10
  for (int t = 4; t <= 12; ++t) b.push_back(t);   // from 4 to 12
  auto w = SteadyDecodeWindow({a, b});
  ASSERT_TRUE(w.ok()) << w.status();
  // b's token kGraphWarmSteps + 1 comes at 6; a's last at 10.
  EXPECT_DOUBLE_EQ(w->start_s, 6);
  EXPECT_DOUBLE_EQ(w->end_s, 10);
  EXPECT_EQ(w->tokens, 8);  // 7, 8, 9, 10 of each
  EXPECT_DOUBLE_EQ(w->tokens_per_s, 2);
}

TEST(LongContextAccountingTest, SteadyWindowRefusesSequencesThatNeverOverlap) {
  EXPECT_FALSE(SteadyDecodeWindow({}).ok());
  EXPECT_FALSE(SteadyDecodeWindow({{1, 2, 3}}).ok());  // no token after the graph warm-up
  auto apart = SteadyDecodeWindow({{1, 2, 3, 4}, {10, 11, 12, 13}});
  ASSERT_FALSE(apart.ok());
  EXPECT_NE(apart.status().message().find("never all decoded at once"), std::string::npos);
}

TEST(LongContextAccountingTest, KvBytesFollowTheElementType) {
  EXPECT_DOUBLE_EQ(KvBytesPerHeadToken(KvCacheDtype::kAuto, 2, 128), 512);
  EXPECT_DOUBLE_EQ(KvBytesPerHeadToken(KvCacheDtype::kFp8E4M3, 2, 128), 256);
  EXPECT_DOUBLE_EQ(KvBytesPerHeadToken(KvCacheDtype::kInt8, 2, 128), 256 + 8);
  EXPECT_DOUBLE_EQ(KvBytesPerHeadToken(KvCacheDtype::kAuto, 4, 64), 512);
}

TEST(LongContextAccountingTest, DecodeReadsTheUnionOfEachGroupsSpansOnce) {
  EXPECT_EQ(DecodeKvHeadTokens(nullptr, 32, 32, 8, 1000), int64_t(32) * 8 * 1000);
  // One layer, 4 query heads in 2 groups of 2, sinks of 4 tokens.
  auto plan = runtime::ParseMoaPlan(R"({"format": "tern.moa.v1", "num_layers": 1, "num_heads": 4, "sinks": 4,
      "buckets": [{"alphas": [[10, 0, 20, 1]], "betas": [[0, 0.5, 0, 0]]}]})",
                                    "test plan");
  ASSERT_TRUE(plan.ok()) << plan.status();
  // n = 100: group 0 bands start at 90 and 50 -> sink 4 + keys 50..99; group 1
  // at 80 and 99 -> sink 4 + keys 80..99.
  EXPECT_EQ(DecodeKvHeadTokens(&*plan, 1, 4, 2, 100), (4 + 50) + (4 + 20));
  // n = 12: group 0's 10-token band starts at key 2, inside its sink's
  // reach, and group 1's 20-token band covers every key: 12 each, no key twice.
  EXPECT_EQ(DecodeKvHeadTokens(&*plan, 1, 4, 2, 12), 12 + 12);
  // Whole context under a full band: never more than n per kv head.
  auto full = runtime::ParseMoaPlan(R"({"format": "tern.moa.v1", "num_layers": 1, "num_heads": 2, "sinks": 64,
      "buckets": [{"alphas": [[0, 0]], "betas": [[1, 1]]}]})",
                                    "full plan");
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(DecodeKvHeadTokens(&*full, 1, 2, 1, 500), 500);
}

}  // namespace
}  // namespace tern::bench
