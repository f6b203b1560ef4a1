#include "loadtest/workload.h"

#include <cmath>
#include <set>

#include "gtest/gtest.h"

namespace tern::loadtest {
namespace {

LoadOptions OpenLoop(double rate, uint64_t seed) {
  LoadOptions o;
  o.model = "m";
  o.mode = ArrivalMode::kPoisson;
  o.rate = rate;
  o.seed = seed;
  o.tenants = {{"", 1}};
  return o;
}

TEST(WorkloadTest, PoissonGapsHaveTheRightMeanAndSpread) {
  ArrivalProcess arrivals(ArrivalMode::kPoisson, 20.0, 7);
  EXPECT_EQ(arrivals.Next(), 0);  // the first request goes at once
  constexpr int kGaps = 50000;
  double previous = 0;
  double sum = 0;
  double sum_sq = 0;
  int below_mean = 0;
  for (int i = 0; i < kGaps; ++i) {
    const double t = arrivals.Next();
    const double gap = t - previous;
    ASSERT_GE(gap, 0);
    previous = t;
    sum += gap;
    sum_sq += gap * gap;
    below_mean += gap < 1.0 / 20;
  }
  const double mean = sum / kGaps;
  const double stddev = std::sqrt(sum_sq / kGaps - mean * mean);
  // Exponential: mean 1/rate, coefficient of variation 1, P(gap < mean) = 1 - 1/e.
  EXPECT_NEAR(mean, 0.05, 0.05 * 0.02);
  EXPECT_NEAR(stddev / mean, 1.0, 0.02);
  EXPECT_NEAR(static_cast<double>(below_mean) / kGaps, 1 - std::exp(-1.0), 0.01);
}

TEST(WorkloadTest, ConstantArrivalsAreEvenlySpaced) {
  ArrivalProcess arrivals(ArrivalMode::kConstant, 4.0, 1);
  for (int i = 0; i < 1000; ++i) ASSERT_DOUBLE_EQ(arrivals.Next(), i * 0.25);
}

TEST(WorkloadTest, ClosedLoopArrivesAtOnce) {
  ArrivalProcess arrivals(ArrivalMode::kClosedLoop, 0, 1);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(arrivals.Next(), 0);
}

TEST(WorkloadTest, SameSeedSameWorkloadOtherSeedOtherWorkload) {
  const LoadOptions a = OpenLoop(10, 42);
  const LoadOptions b = OpenLoop(10, 43);
  Workload w1(a, 80), w2(a, 80), w3(b, 80);
  int differing = 0;
  for (int i = 0; i < 200; ++i) {
    const PlannedRequest r1 = w1.Next(), r2 = w2.Next(), r3 = w3.Next();
    EXPECT_EQ(r1.index, i);
    EXPECT_EQ(r1.arrival_s, r2.arrival_s);
    EXPECT_EQ(r1.prompt, r2.prompt);
    differing += r1.prompt != r3.prompt || r1.arrival_s != r3.arrival_s;
  }
  EXPECT_GT(differing, 190);
}

TEST(WorkloadTest, LengthDistributionDoesNotMoveArrivalsOrPrompts) {
  LoadOptions fixed = OpenLoop(10, 5);
  LoadOptions drawn = fixed;
  drawn.max_tokens_lo = 10;
  drawn.max_tokens_hi = 20;
  Workload w1(fixed, 1030), w2(drawn, 1030);
  std::set<int> lengths;
  for (int i = 0; i < 2000; ++i) {
    const PlannedRequest r1 = w1.Next(), r2 = w2.Next();
    ASSERT_EQ(r1.arrival_s, r2.arrival_s);
    ASSERT_EQ(r1.prompt, r2.prompt);
    EXPECT_EQ(r1.max_tokens, 128);
    ASSERT_GE(r2.max_tokens, 10);
    ASSERT_LE(r2.max_tokens, 20);
    lengths.insert(r2.max_tokens);
  }
  EXPECT_EQ(lengths.size(), 11u);  // both ends included
}

TEST(WorkloadTest, ImagesTakeTheirShareWithoutMovingTheTextRequests) {
  LoadOptions text = OpenLoop(10, 9);
  LoadOptions mixed = text;
  mixed.image_model = "dit";
  mixed.image_share = 0.25;
  mixed.image_steps_lo = 5;
  mixed.image_steps_hi = 8;
  mixed.image_classes = 3;
  Workload w1(text, 80), w2(mixed, 80);
  int images = 0;
  std::set<int> steps, classes;
  for (int i = 0; i < 4000; ++i) {
    const PlannedRequest r1 = w1.Next(), r2 = w2.Next();
    ASSERT_EQ(r1.arrival_s, r2.arrival_s);
    ASSERT_EQ(r1.prompt, r2.prompt);
    ASSERT_EQ(r1.tenant, r2.tenant);
    EXPECT_FALSE(r1.image);
    if (!r2.image) continue;
    ++images;
    ASSERT_GE(r2.image_steps, 5);
    ASSERT_LE(r2.image_steps, 8);
    steps.insert(r2.image_steps);
    classes.insert(r2.image_class);
  }
  EXPECT_NEAR(images / 4000.0, 0.25, 0.03);
  EXPECT_EQ(steps.size(), 4u);
  EXPECT_EQ(classes, (std::set<int>{0, 1, 2}));
}

TEST(WorkloadTest, PromptsCoverTheWholeList) {
  Workload w(OpenLoop(1, 3), 80);
  std::vector<int> hits(80);
  for (int i = 0; i < 8000; ++i) {
    const PlannedRequest r = w.Next();
    ASSERT_GE(r.prompt, 0);
    ASSERT_LT(r.prompt, 80);
    EXPECT_TRUE(r.token_ids.empty());
    ++hits[r.prompt];
  }
  for (int h : hits) {
    EXPECT_GT(h, 50);   // expected 100 each
    EXPECT_LT(h, 150);
  }
}

TEST(WorkloadTest, SyntheticPromptsAreTokenIdsInRange) {
  LoadOptions o = OpenLoop(1, 9);
  o.synthetic_prompt_tokens = 64;
  o.synthetic_token_lo = 100;
  o.synthetic_token_hi = 103;
  Workload w(o, 0);
  std::set<int32_t> seen;
  for (int i = 0; i < 50; ++i) {
    const PlannedRequest r = w.Next();
    EXPECT_EQ(r.prompt, -1);
    ASSERT_EQ(r.token_ids.size(), 64u);
    for (int32_t id : r.token_ids) {
      ASSERT_GE(id, 100);
      ASSERT_LE(id, 103);
      seen.insert(id);
    }
  }
  EXPECT_EQ(seen.size(), 4u);
}

TEST(WorkloadTest, TenantMixFollowsTheWeights) {
  LoadOptions o = OpenLoop(1, 11);
  o.tenants = {{"keyA", 3}, {"keyB", 1}, {"keyC", 0.5}};
  Workload w(o, 10);
  constexpr int kRequests = 45000;
  std::vector<int> count(3);
  for (int i = 0; i < kRequests; ++i) ++count[w.Next().tenant];
  EXPECT_NEAR(count[0] / double(kRequests), 3 / 4.5, 0.01);
  EXPECT_NEAR(count[1] / double(kRequests), 1 / 4.5, 0.01);
  EXPECT_NEAR(count[2] / double(kRequests), 0.5 / 4.5, 0.01);
}

TEST(WorkloadTest, SotShareSendsThatFractionWithoutMovingTheRest) {
  LoadOptions plain = OpenLoop(10, 21);
  LoadOptions mixed = plain;
  mixed.sot_share = 0.3;
  Workload w1(plain, 80), w2(mixed, 80);
  constexpr int kRequests = 20000;
  int sot = 0;
  for (int i = 0; i < kRequests; ++i) {
    const PlannedRequest r1 = w1.Next(), r2 = w2.Next();
    ASSERT_FALSE(r1.sot);
    ASSERT_EQ(r1.arrival_s, r2.arrival_s);
    ASSERT_EQ(r1.prompt, r2.prompt);
    ASSERT_EQ(r1.max_tokens, r2.max_tokens);  // no outline: SoT requests keep their length
    sot += r2.sot;
  }
  EXPECT_NEAR(sot / double(kRequests), 0.3, 0.01);

  LoadOptions all = OpenLoop(10, 21);
  all.decoding_mode = DecodingChoice::kSot;
  Workload w3(all, 80);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(w3.Next().sot);
}

TEST(WorkloadTest, SyntheticOutlineFixesSotRequestLengths) {
  LoadOptions o = OpenLoop(10, 4);
  o.sot_share = 0.5;
  o.sot_outline_points = 4;
  o.sot_point_tokens = 16;
  o.max_tokens = 48;
  Workload w(o, 80);
  int sot = 0;
  for (int i = 0; i < 200; ++i) {
    const PlannedRequest r = w.Next();
    EXPECT_EQ(r.max_tokens, r.sot ? 64 : 48);
    sot += r.sot;
  }
  EXPECT_GT(sot, 50);
  EXPECT_LT(sot, 150);
}

TEST(WorkloadTest, UniformIntIsUnbiasedOnSmallRanges) {
  std::mt19937_64 rng(StreamSeed(1, 2));
  std::vector<int> count(3);
  for (int i = 0; i < 30000; ++i) ++count[UniformInt(rng, -1, 1) + 1];
  for (int c : count) EXPECT_NEAR(c, 10000, 300);
  for (int i = 0; i < 100; ++i) {
    const double u = UniformUnit(rng);
    ASSERT_GE(u, 0);
    ASSERT_LT(u, 1);
  }
}

}  // namespace
}  // namespace tern::loadtest
