#include "loadtest/request_metrics.h"

#include "gtest/gtest.h"

namespace tern::loadtest {
namespace {

using std::chrono::milliseconds;

RequestTrace TraceWithChunks(const std::vector<int>& chunk_ms, int done_ms) {
  RequestTrace t;
  t.scheduled = Clock::time_point() + std::chrono::seconds(100);
  t.sent = t.scheduled + milliseconds(5);
  for (int ms : chunk_ms) t.token_chunk_times.push_back(t.sent + milliseconds(ms));
  t.done = t.sent + milliseconds(done_ms);
  t.status_code = 0;
  return t;
}

TEST(RequestMetricsTest, DerivesTtftItlTpotAndE2e) {
  RequestTrace t = TraceWithChunks({100, 120, 150, 160}, 170);
  t.counted_tokens = 4;
  t.usage_completion_tokens = 4;
  const RequestMetrics m = ComputeRequestMetrics(t);
  EXPECT_TRUE(m.ok);
  ASSERT_TRUE(m.ttft_ms.has_value());
  EXPECT_NEAR(*m.ttft_ms, 100, 1e-9);
  ASSERT_EQ(m.itl_ms.size(), 3u);
  EXPECT_NEAR(m.itl_ms[0], 20, 1e-9);
  EXPECT_NEAR(m.itl_ms[1], 30, 1e-9);
  EXPECT_NEAR(m.itl_ms[2], 10, 1e-9);
  EXPECT_NEAR(m.e2e_ms, 170, 1e-9);
  // (170 - 100) / (4 - 1)
  ASSERT_TRUE(m.tpot_ms.has_value());
  EXPECT_NEAR(*m.tpot_ms, 70.0 / 3, 1e-9);
  EXPECT_NEAR(m.client_queue_ms, 5, 1e-9);
  EXPECT_EQ(m.output_tokens, 4);
}

TEST(RequestMetricsTest, UsageCountWinsOverCountedIds) {
  // Chunks may carry several tokens each: TPOT divides by tokens, not chunks.
  RequestTrace t = TraceWithChunks({50, 90}, 100);
  t.counted_tokens = 3;
  t.usage_completion_tokens = 11;
  const RequestMetrics m = ComputeRequestMetrics(t);
  EXPECT_EQ(m.output_tokens, 11);
  EXPECT_NEAR(*m.tpot_ms, 50.0 / 10, 1e-9);
  t.usage_completion_tokens.reset();
  EXPECT_EQ(ComputeRequestMetrics(t).output_tokens, 3);
}

TEST(RequestMetricsTest, OneTokenHasTtftButNoTpotOrItl) {
  RequestTrace t = TraceWithChunks({40}, 45);
  t.counted_tokens = 1;
  const RequestMetrics m = ComputeRequestMetrics(t);
  EXPECT_NEAR(*m.ttft_ms, 40, 1e-9);
  EXPECT_FALSE(m.tpot_ms.has_value());
  EXPECT_TRUE(m.itl_ms.empty());
}

TEST(RequestMetricsTest, NoTokenChunkMeansNoTtft) {
  RequestTrace t = TraceWithChunks({}, 30);
  t.status_code = 14;  // UNAVAILABLE
  const RequestMetrics m = ComputeRequestMetrics(t);
  EXPECT_FALSE(m.ok);
  EXPECT_FALSE(m.ttft_ms.has_value());
  EXPECT_FALSE(m.tpot_ms.has_value());
  EXPECT_NEAR(m.e2e_ms, 30, 1e-9);
  EXPECT_EQ(m.output_tokens, 0);
}

}  // namespace
}  // namespace tern::loadtest
