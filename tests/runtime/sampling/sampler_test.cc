#include "runtime/sampling/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace tern::runtime {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

std::vector<float> RandomLogits(int vocab, float stddev, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> logits(vocab);
  for (float& x : logits) x = normal(rng);
  return logits;
}

void Renormalize(std::vector<double>& p) {
  const double sum = std::accumulate(p.begin(), p.end(), 0.0);
  for (double& x : p) x /= sum;
}

// The sampling distribution by brute force, one filter at a time as Hugging
// Face applies them: softmax(logits / t), top-k, renormalize, top-p,
// renormalize, min-p, renormalize. No penalties.
std::vector<double> ReferenceDistribution(const std::vector<float>& logits,
                                          const SamplingParams& params) {
  const int vocab = static_cast<int>(logits.size());
  const float max = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(vocab);
  for (int i = 0; i < vocab; ++i) {
    p[i] = logits[i] == kNegInf ? 0.0 : std::exp((double{logits[i]} - max) / params.temperature);
  }
  Renormalize(p);
  std::vector<int> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return logits[a] > logits[b]; });
  if (params.top_k > 0) {
    for (int r = params.top_k; r < vocab; ++r) p[order[r]] = 0.0;
    Renormalize(p);
  }
  if (params.top_p < 1.0f) {
    double before = 0.0;
    for (int id : order) {
      if (before >= params.top_p) {
        p[id] = 0.0;
      } else {
        before += p[id];
      }
    }
    Renormalize(p);
  }
  if (params.min_p > 0.0f) {
    const double top = *std::max_element(p.begin(), p.end());
    for (double& x : p) {
      if (x < params.min_p * top) x = 0.0;
    }
    Renormalize(p);
  }
  return p;
}

struct Fit {
  double chi_square = 0.0;
  int degrees_of_freedom = 0;
  int draws_outside_support = 0;
  // Passes when nothing was drawn outside the reference's support and the
  // statistic is below df + 6 sqrt(2 df) (about 6 sigma: with a fixed seed the
  // test is deterministic, and a wrong filter misses by far more).
  bool Passes() const {
    return draws_outside_support == 0 &&
           chi_square < degrees_of_freedom + 6.0 * std::sqrt(2.0 * degrees_of_freedom) + 5.0;
  }
};

std::vector<int> DrawCounts(const std::vector<float>& logits, const SamplingParams& params,
                            int draws, uint64_t seed) {
  Sampler sampler;
  SequenceSamplingState state(seed, 0, {});
  std::vector<int> counts(logits.size());
  for (int d = 0; d < draws; ++d) {
    absl::StatusOr<SampledToken> token = sampler.Sample(logits, params, state);
    EXPECT_TRUE(token.ok()) << token.status();
    if (!token.ok()) break;
    ++counts[token->token_id];
    state.AppendOutputToken(token->token_id);
  }
  return counts;
}

// Pearson's chi-square of observed counts against `expected` probabilities;
// categories expected fewer than 5 times are pooled.
Fit ChiSquare(const std::vector<int>& counts, const std::vector<double>& expected) {
  Fit fit;
  const double total = std::accumulate(counts.begin(), counts.end(), 0.0);
  double pooled_expected = 0.0;
  double pooled_observed = 0.0;
  int categories = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    const double e = expected[i] * total;
    if (expected[i] == 0.0) {
      fit.draws_outside_support += counts[i];
      continue;
    }
    if (e < 5.0) {
      pooled_expected += e;
      pooled_observed += counts[i];
      continue;
    }
    fit.chi_square += (counts[i] - e) * (counts[i] - e) / e;
    ++categories;
  }
  if (pooled_expected > 0.0) {
    fit.chi_square +=
        (pooled_observed - pooled_expected) * (pooled_observed - pooled_expected) / pooled_expected;
    ++categories;
  }
  fit.degrees_of_freedom = std::max(categories - 1, 1);
  return fit;
}

Fit SampleAndFit(const std::vector<float>& logits, const SamplingParams& params, int draws,
                 uint64_t seed) {
  return ChiSquare(DrawCounts(logits, params, draws, seed),
                   ReferenceDistribution(logits, params));
}

int Support(const std::vector<double>& p) {
  return static_cast<int>(std::count_if(p.begin(), p.end(), [](double x) { return x > 0.0; }));
}

SamplingParams Params(float temperature, int top_k, float top_p, float min_p) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  return p;
}

TEST(SamplerTest, GreedyPicksTheArgmax) {
  Sampler sampler;
  SequenceSamplingState state(7, 0, {});
  for (uint32_t seed = 0; seed < 20; ++seed) {
    const std::vector<float> logits = RandomLogits(1000, 3.0f, seed);
    const int32_t expected =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    absl::StatusOr<SampledToken> token = sampler.Sample(logits, Params(0.0f, 0, 1.0f, 0.0f), state);
    ASSERT_TRUE(token.ok()) << token.status();
    EXPECT_EQ(token->token_id, expected);
  }
}

TEST(SamplerTest, GreedyBreaksTiesTowardTheLowerId) {
  Sampler sampler;
  SequenceSamplingState state(7, 0, {});
  const std::vector<float> logits = {0.0f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(sampler.Sample(logits, Params(0.0f, 0, 1.0f, 0.0f), state)->token_id, 1);
}

TEST(SamplerTest, GreedySeesPenalties) {
  Sampler sampler;
  SequenceSamplingState state(7, 0, std::vector<int32_t>{1});
  const std::vector<float> logits = {1.0f, 1.5f, -1.0f};
  SamplingParams params = Params(0.0f, 0, 1.0f, 0.0f);
  EXPECT_EQ(sampler.Sample(logits, params, state)->token_id, 1);
  params.repetition_penalty = 2.0f;  // 1.5 -> 0.75
  EXPECT_EQ(sampler.Sample(logits, params, state)->token_id, 0);
}

TEST(SamplerTest, TinyTemperatureActsAsArgmax) {
  Sampler sampler;
  SequenceSamplingState state(7, 0, {});
  const std::vector<float> logits = RandomLogits(500, 1.0f, 3);
  const int32_t expected =
      static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  for (float t : {1e-6f, 1e-30f, 1e-40f /* denormal */}) {
    for (int i = 0; i < 20; ++i) {
      absl::StatusOr<SampledToken> token = sampler.Sample(logits, Params(t, 0, 1.0f, 0.0f), state);
      ASSERT_TRUE(token.ok()) << token.status();
      EXPECT_EQ(token->token_id, expected) << "t=" << t;
      state.AppendOutputToken(token->token_id);
    }
  }
}

TEST(SamplerTest, SameSeedSameTokens) {
  const std::vector<float> logits = RandomLogits(300, 1.0f, 11);
  const SamplingParams params = Params(1.0f, 0, 0.95f, 0.0f);
  auto run = [&](uint64_t seed, uint32_t stream) {
    Sampler sampler;
    SequenceSamplingState state(seed, stream, {});
    std::vector<int32_t> out;
    for (int i = 0; i < 200; ++i) {
      out.push_back(sampler.Sample(logits, params, state)->token_id);
      state.AppendOutputToken(out.back());
    }
    return out;
  };
  EXPECT_EQ(run(1234, 0), run(1234, 0));
  EXPECT_NE(run(1234, 0), run(1235, 0));
  EXPECT_NE(run(1234, 0), run(1234, 1));
}

TEST(SamplerTest, SamplingDoesNotAdvanceTheState) {
  Sampler sampler;
  SequenceSamplingState state(99, 0, {});
  const std::vector<float> logits(1000, 0.0f);  // uniform: any reuse would show
  const SamplingParams params;
  const int32_t first = sampler.Sample(logits, params, state)->token_id;
  EXPECT_EQ(sampler.Sample(logits, params, state)->token_id, first);
  state.AppendOutputToken(first);
  EXPECT_EQ(state.num_output_tokens(), 1);
  // The next position draws a new uniform.
  EXPECT_NE(state.NextUniform(), PhiloxUniform(99, 0, 0));
}

// Each sequence owns its stream: sampling others in between (the batch) with
// the same Sampler changes nothing.
TEST(SamplerTest, IndependentOfBatchComposition) {
  const std::vector<float> logits_a = RandomLogits(2000, 2.0f, 1);
  const std::vector<float> logits_b = RandomLogits(32000, 1.0f, 2);
  SamplingParams params_a = Params(0.8f, 40, 0.9f, 0.0f);
  params_a.repetition_penalty = 1.2f;
  const SamplingParams params_b = Params(1.3f, 0, 1.0f, 0.05f);

  Sampler alone;
  SequenceSamplingState state_alone(5, 0, std::vector<int32_t>{1, 2, 3});
  std::vector<int32_t> expected;
  for (int i = 0; i < 100; ++i) {
    expected.push_back(alone.Sample(logits_a, params_a, state_alone)->token_id);
    state_alone.AppendOutputToken(expected.back());
  }

  Sampler shared;
  SequenceSamplingState state_a(5, 0, std::vector<int32_t>{1, 2, 3});
  SequenceSamplingState state_b(5, 1, {});
  SequenceSamplingState state_c(77, 0, {});
  std::vector<int32_t> got;
  for (int i = 0; i < 100; ++i) {
    for (int j = 0; j < i % 3; ++j) {
      state_b.AppendOutputToken(shared.Sample(logits_b, params_b, state_b)->token_id);
    }
    got.push_back(shared.Sample(logits_a, params_a, state_a)->token_id);
    state_a.AppendOutputToken(got.back());
    state_c.AppendOutputToken(shared.Sample(logits_a, params_b, state_c)->token_id);
  }
  EXPECT_EQ(got, expected);
}

class SamplerDistributionTest
    : public ::testing::TestWithParam<std::tuple<float, int, float, float>> {};

TEST_P(SamplerDistributionTest, MatchesBruteForceReference) {
  const auto [temperature, top_k, top_p, min_p] = GetParam();
  const SamplingParams params = Params(temperature, top_k, top_p, min_p);
  const std::vector<float> logits = RandomLogits(64, 2.0f, 17);
  const Fit fit = SampleAndFit(logits, params, 40000, 2024);
  EXPECT_TRUE(fit.Passes()) << "chi2=" << fit.chi_square << " df=" << fit.degrees_of_freedom
                            << " outside=" << fit.draws_outside_support;
}

INSTANTIATE_TEST_SUITE_P(
    Filters, SamplerDistributionTest,
    ::testing::Values(std::make_tuple(1.0f, 0, 1.0f, 0.0f),     // plain softmax
                      std::make_tuple(0.5f, 0, 1.0f, 0.0f),     // sharper
                      std::make_tuple(2.5f, 0, 1.0f, 0.0f),     // flatter
                      std::make_tuple(1.0f, 5, 1.0f, 0.0f),     // top-k
                      std::make_tuple(1.0f, 1, 1.0f, 0.0f),     // top-k 1: argmax
                      std::make_tuple(1.0f, 64, 1.0f, 0.0f),    // top-k == vocab
                      std::make_tuple(1.0f, 1000, 1.0f, 0.0f),  // top-k > vocab
                      std::make_tuple(1.0f, 0, 0.7f, 0.0f),     // top-p
                      std::make_tuple(0.7f, 0, 0.3f, 0.0f),     // top-p, few tokens
                      std::make_tuple(1.0f, 0, 1.0f, 0.1f),     // min-p
                      std::make_tuple(1.5f, 0, 1.0f, 0.02f),    // min-p, flatter
                      std::make_tuple(1.0f, 20, 0.9f, 0.0f),    // top-k then top-p
                      std::make_tuple(1.2f, 20, 0.9f, 0.05f),   // all three
                      // min-p cuts inside the top-k set while top-p still
                      // needs the top-k mass.
                      std::make_tuple(1.0f, 30, 0.8f, 0.2f),
                      std::make_tuple(1.0f, 0, 0.6f, 0.3f)));   // top-p then min-p

// The chi-square check rejects a distribution that differs by one token.
TEST(SamplerTest, FitRejectsAWrongDistribution) {
  const std::vector<float> logits = RandomLogits(64, 2.0f, 17);
  const std::vector<int> counts = DrawCounts(logits, Params(1.0f, 6, 1.0f, 0.0f), 40000, 2024);
  EXPECT_FALSE(ChiSquare(counts, ReferenceDistribution(logits, Params(1.0f, 5, 1.0f, 0.0f)))
                   .Passes());
  EXPECT_FALSE(ChiSquare(counts, ReferenceDistribution(logits, Params(1.0f, 7, 1.0f, 0.0f)))
                   .Passes());
  EXPECT_TRUE(ChiSquare(counts, ReferenceDistribution(logits, Params(1.0f, 6, 1.0f, 0.0f)))
                  .Passes());
}

// Near-flat logits make top-p keep ~450 of 500 tokens, so the sampler must
// grow its partially sorted prefix several times (64, 320, 500).
TEST(SamplerTest, TopPOverManyTokensMatchesReference) {
  const std::vector<float> logits = RandomLogits(500, 0.3f, 5);
  const SamplingParams params = Params(1.0f, 0, 0.9f, 0.0f);
  const std::vector<double> reference = ReferenceDistribution(logits, params);
  ASSERT_GT(Support(reference), 320);
  const Fit fit = ChiSquare(DrawCounts(logits, params, 30000, 8), reference);
  EXPECT_TRUE(fit.Passes()) << "chi2=" << fit.chi_square << " df=" << fit.degrees_of_freedom
                            << " outside=" << fit.draws_outside_support;
}

// k above the heap limit selects with nth_element.
TEST(SamplerTest, LargeTopKMatchesReference) {
  const std::vector<float> logits = RandomLogits(1500, 0.5f, 6);
  for (const SamplingParams& params : {Params(1.0f, 600, 1.0f, 0.0f), Params(1.0f, 600, 0.8f, 0.0f)}) {
    const std::vector<double> reference = ReferenceDistribution(logits, params);
    const Fit fit = ChiSquare(DrawCounts(logits, params, 30000, 9), reference);
    EXPECT_TRUE(fit.Passes()) << "chi2=" << fit.chi_square << " df=" << fit.degrees_of_freedom
                              << " outside=" << fit.draws_outside_support;
  }
}

TEST(SamplerTest, LargeVocabularyDrawsOnlyAllowedTokens) {
  const std::vector<float> logits = RandomLogits(128256, 2.0f, 21);
  for (const SamplingParams& params :
       {Params(1.0f, 50, 1.0f, 0.0f), Params(0.8f, 0, 0.5f, 0.0f), Params(1.0f, 40, 0.95f, 0.05f),
        Params(1.0f, 0, 1.0f, 0.3f), Params(1.0f, 2000, 1.0f, 0.0f) /* nth_element top-k */,
        Params(1.0f, 1000, 0.9f, 0.01f)}) {
    const std::vector<double> reference = ReferenceDistribution(logits, params);
    const std::vector<int> counts = DrawCounts(logits, params, 300, 3);
    for (size_t i = 0; i < counts.size(); ++i) {
      if (counts[i] > 0) {
        EXPECT_GT(reference[i], 0.0) << "token " << i;
      }
    }
  }
}

TEST(SamplerTest, VocabularyOfOne) {
  Sampler sampler;
  SequenceSamplingState state(1, 0, {});
  SamplingParams params = Params(1.0f, 0, 0.5f, 0.5f);
  params.logprobs = 3;
  absl::StatusOr<SampledToken> token = sampler.Sample(std::vector<float>{-3.0f}, params, state);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(token->token_id, 0);
  EXPECT_FLOAT_EQ(*token->logprob, 0.0f);
  ASSERT_EQ(token->top_logprobs.size(), 1u);
  EXPECT_EQ(token->top_logprobs[0].token_id, 0);
}

TEST(SamplerTest, AllNegativeInfinityButOne) {
  std::vector<float> logits(100, kNegInf);
  logits[42] = -1000.0f;
  Sampler sampler;
  SequenceSamplingState state(1, 0, {});
  for (const SamplingParams& params : {Params(1.0f, 0, 1.0f, 0.0f), Params(2.0f, 10, 0.3f, 0.9f),
                                       Params(0.0f, 0, 1.0f, 0.0f)}) {
    for (int i = 0; i < 10; ++i) {
      absl::StatusOr<SampledToken> token = sampler.Sample(logits, params, state);
      ASSERT_TRUE(token.ok()) << token.status();
      EXPECT_EQ(token->token_id, 42);
      state.AppendOutputToken(42);
    }
  }
}

TEST(SamplerTest, NegativeInfinityTokensAreNeverDrawn) {
  std::vector<float> logits = RandomLogits(64, 1.0f, 4);
  for (int i = 0; i < 64; i += 3) logits[i] = kNegInf;
  const SamplingParams params = Params(1.0f, 0, 1.0f, 0.0f);
  const Fit fit = SampleAndFit(logits, params, 20000, 6);
  EXPECT_TRUE(fit.Passes()) << fit.chi_square;
  EXPECT_EQ(fit.draws_outside_support, 0);
}

TEST(SamplerTest, MinPOneKeepsOnlyTheMostLikely) {
  const std::vector<float> logits = {0.0f, 3.0f, 1.0f, 3.0f, 2.9f};
  const std::vector<int> counts = DrawCounts(logits, Params(1.0f, 0, 1.0f, 1.0f), 2000, 1);
  EXPECT_EQ(counts[0] + counts[2] + counts[4], 0);
  EXPECT_GT(counts[1], 800);
  EXPECT_GT(counts[3], 800);
}

TEST(SamplerTest, RejectsBadRows) {
  Sampler sampler;
  SequenceSamplingState state(1, 0, {});
  const SamplingParams params;
  EXPECT_EQ(sampler.Sample({}, params, state).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sampler.Sample(std::vector<float>{kNegInf, kNegInf}, params, state).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sampler.Sample(std::vector<float>{0.0f, std::nanf("")}, params, state).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(sampler.Sample(std::vector<float>{0.0f, -kNegInf}, params, state).status().code(),
            absl::StatusCode::kInvalidArgument);
  SamplingParams penalized;
  penalized.repetition_penalty = 1.3f;
  SequenceSamplingState bad_prompt(1, 0, std::vector<int32_t>{5});
  EXPECT_EQ(sampler.Sample(std::vector<float>{0.0f, 1.0f}, penalized, bad_prompt).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SamplerTest, NoLogprobsUnlessAsked) {
  Sampler sampler;
  SequenceSamplingState state(1, 0, {});
  absl::StatusOr<SampledToken> token =
      sampler.Sample(RandomLogits(10, 1.0f, 1), SamplingParams(), state);
  ASSERT_TRUE(token.ok());
  EXPECT_FALSE(token->logprob.has_value());
  EXPECT_TRUE(token->top_logprobs.empty());
}

// Logprobs are the raw model distribution's: unaffected by temperature,
// filters and penalties; the full top list sums to one.
TEST(SamplerTest, LogprobsAreTheRawLogSoftmax) {
  const std::vector<float> logits = RandomLogits(20, 2.0f, 9);
  double max = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float x : logits) sum += std::exp(x - max);
  std::vector<int> order(20);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });

  SamplingParams params = Params(0.3f, 4, 0.8f, 0.1f);
  params.repetition_penalty = 1.7f;
  params.frequency_penalty = 1.0f;
  params.logprobs = 20;
  Sampler sampler;
  SequenceSamplingState state(3, 0, std::vector<int32_t>{order[0], order[1]});
  state.AppendOutputToken(order[2]);
  for (int step = 0; step < 5; ++step) {
    absl::StatusOr<SampledToken> token = sampler.Sample(logits, params, state);
    ASSERT_TRUE(token.ok()) << token.status();
    const double expected = logits[token->token_id] - max - std::log(sum);
    EXPECT_NEAR(*token->logprob, expected, 1e-5);
    ASSERT_EQ(token->top_logprobs.size(), 20u);
    double total = 0.0;
    for (int r = 0; r < 20; ++r) {
      EXPECT_EQ(token->top_logprobs[r].token_id, order[r]) << "rank " << r;
      EXPECT_NEAR(token->top_logprobs[r].logprob, logits[order[r]] - max - std::log(sum), 1e-5);
      total += std::exp(token->top_logprobs[r].logprob);
    }
    EXPECT_NEAR(total, 1.0, 1e-5);
    state.AppendOutputToken(token->token_id);
  }
}

TEST(SamplerTest, TopLogprobsBestFirstWithTiesByLowerId) {
  std::vector<float> logits = {1.0f, 3.0f, 2.0f, 3.0f, kNegInf, 2.0f};
  SamplingParams params = Params(0.0f, 0, 1.0f, 0.0f);
  params.logprobs = 4;
  Sampler sampler;
  SequenceSamplingState state(3, 0, {});
  absl::StatusOr<SampledToken> token = sampler.Sample(logits, params, state);
  ASSERT_TRUE(token.ok());
  ASSERT_EQ(token->top_logprobs.size(), 4u);
  EXPECT_EQ(token->top_logprobs[0].token_id, 1);
  EXPECT_EQ(token->top_logprobs[1].token_id, 3);
  EXPECT_EQ(token->top_logprobs[2].token_id, 2);
  EXPECT_EQ(token->top_logprobs[3].token_id, 5);
  EXPECT_FLOAT_EQ(token->top_logprobs[0].logprob, token->top_logprobs[1].logprob);
  // Asking for more than there are finite tokens returns the finite ones.
  params.logprobs = 20;
  token = sampler.Sample(logits, params, state);
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(token->top_logprobs.size(), 5u);
  double total = 0.0;
  for (const TokenLogprob& t : token->top_logprobs) total += std::exp(t.logprob);
  EXPECT_NEAR(total, 1.0, 1e-6);
}

}  // namespace
}  // namespace tern::runtime
