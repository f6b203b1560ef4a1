#include "loadtest/stats.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace tern::loadtest {
namespace {

// Expected values are numpy.percentile(..., method="linear").
TEST(StatsTest, PercentileInterpolatesBetweenClosestRanks) {
  const std::vector<double> v = {1, 2, 3, 4};
  EXPECT_DOUBLE_EQ(PercentileOfSorted(v, 0), 1);
  EXPECT_DOUBLE_EQ(PercentileOfSorted(v, 50), 2.5);
  EXPECT_DOUBLE_EQ(PercentileOfSorted(v, 90), 3.7);
  EXPECT_DOUBLE_EQ(PercentileOfSorted(v, 99), 3.97);
  EXPECT_DOUBLE_EQ(PercentileOfSorted(v, 100), 4);
}

TEST(StatsTest, PercentileOfOneValueIsThatValue) {
  for (double p : {0.0, 50.0, 99.0, 100.0}) EXPECT_DOUBLE_EQ(PercentileOfSorted({7.5}, p), 7.5);
}

TEST(StatsTest, SummarizeOneToHundred) {
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) v.push_back(i);  // descending: Summarize must sort
  const Distribution d = Summarize(v);
  EXPECT_EQ(d.count, 100);
  EXPECT_DOUBLE_EQ(d.mean, 50.5);
  EXPECT_DOUBLE_EQ(d.min, 1);
  EXPECT_DOUBLE_EQ(d.max, 100);
  EXPECT_DOUBLE_EQ(d.p50, 50.5);
  EXPECT_NEAR(d.p90, 90.1, 1e-9);
  EXPECT_NEAR(d.p99, 99.01, 1e-9);
}

TEST(StatsTest, SummarizeSkewedSample) {
  // 98 fast requests and two slow ones: the tail shows only at p99.
  std::vector<double> v(98, 10.0);
  v.push_back(1000);
  v.push_back(2000);
  const Distribution d = Summarize(v);
  EXPECT_DOUBLE_EQ(d.p50, 10);
  EXPECT_DOUBLE_EQ(d.p90, 10);
  // rank 0.99 * 99 = 98.01: between 1000 (index 98) and 2000 (index 99).
  EXPECT_NEAR(d.p99, 1010, 1e-9);
  EXPECT_NEAR(d.mean, (98 * 10.0 + 3000) / 100, 1e-12);
}

TEST(StatsTest, SummarizeEmptyHasZeroCount) {
  const Distribution d = Summarize({});
  EXPECT_EQ(d.count, 0);
}

TEST(StatsTest, MeetsSloChecksOnlyGivenObjectives) {
  const SloSample fast{true, 100, 20.0};
  const SloSample slow_first{true, 900, 20.0};
  const SloSample slow_decode{true, 100, 80.0};
  const SloSample one_token{true, 100, std::nullopt};
  const SloSample failed{false, 1, 1.0};
  const Slo both{500.0, 50.0};
  EXPECT_TRUE(MeetsSlo(fast, both));
  EXPECT_FALSE(MeetsSlo(slow_first, both));
  EXPECT_FALSE(MeetsSlo(slow_decode, both));
  EXPECT_TRUE(MeetsSlo(one_token, both));
  EXPECT_FALSE(MeetsSlo(failed, both));
  EXPECT_FALSE(MeetsSlo(failed, Slo{}));
  EXPECT_TRUE(MeetsSlo(slow_first, Slo{std::nullopt, 50.0}));
  EXPECT_TRUE(MeetsSlo(slow_decode, Slo{500.0, std::nullopt}));
  // Exactly at the objective meets it.
  EXPECT_TRUE(MeetsSlo(SloSample{true, 500, 50.0}, both));
}

TEST(StatsTest, GoodputCountsRequestsMeetingBothObjectivesPerSecond) {
  const std::vector<SloSample> samples = {
      {true, 100, 10.0}, {true, 200, 60.0}, {true, 600, 10.0}, {false, 100, 10.0}, {true, 300, std::nullopt}};
  const Goodput g = ComputeGoodput(samples, Slo{500.0, 50.0}, 2.0);
  EXPECT_EQ(g.good_requests, 2);
  EXPECT_DOUBLE_EQ(g.requests_per_s, 1.0);
  const Goodput no_slo = ComputeGoodput(samples, Slo{}, 4.0);
  EXPECT_EQ(no_slo.good_requests, 4);
  EXPECT_DOUBLE_EQ(no_slo.requests_per_s, 1.0);
  EXPECT_DOUBLE_EQ(ComputeGoodput(samples, Slo{}, 0).requests_per_s, 0);
}

TEST(StatsTest, GoodputTreatsMissingTtftAsInfinitelySlow) {
  const std::vector<SloSample> samples = {{true, std::numeric_limits<double>::infinity(), std::nullopt}};
  EXPECT_EQ(ComputeGoodput(samples, Slo{1e9, std::nullopt}, 1).good_requests, 0);
  EXPECT_EQ(ComputeGoodput(samples, Slo{}, 1).good_requests, 1);
}

}  // namespace
}  // namespace tern::loadtest
