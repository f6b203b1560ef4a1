#include "runtime/sampling/penalties.h"

#include <vector>

#include "gtest/gtest.h"

namespace tern::runtime {
namespace {

TEST(PenaltiesTest, NeutralParamsLeaveTheRowUntouched) {
  std::vector<float> logits = {1.0f, -2.0f, 0.5f};
  SequenceSamplingState state(1, 0, std::vector<int32_t>{0, 1, 2});
  state.AppendOutputToken(1);
  ASSERT_TRUE(ApplyPenalties(absl::MakeSpan(logits), SamplingParams(), state).ok());
  EXPECT_EQ(logits, (std::vector<float>{1.0f, -2.0f, 0.5f}));
}

// Hugging Face RepetitionPenaltyLogitsProcessor: divide positive logits,
// multiply negative ones, once per distinct token of prompt + output.
TEST(PenaltiesTest, RepetitionFollowsHuggingFace) {
  std::vector<float> logits = {2.0f, -1.0f, 0.5f, 3.0f, -4.0f, 0.0f};
  // Token 0 twice in the prompt and once in the output: still penalized once.
  SequenceSamplingState state(1, 0, std::vector<int32_t>{0, 1, 0, 5});
  state.AppendOutputToken(3);
  state.AppendOutputToken(0);
  state.AppendOutputToken(3);
  SamplingParams params;
  params.repetition_penalty = 2.0f;
  ASSERT_TRUE(ApplyPenalties(absl::MakeSpan(logits), params, state).ok());
  EXPECT_EQ(logits, (std::vector<float>{1.0f, -2.0f, 0.5f, 1.5f, -4.0f, 0.0f}));
}

TEST(PenaltiesTest, RepetitionBelowOneEncourages) {
  std::vector<float> logits = {2.0f, -1.0f};
  SequenceSamplingState state(1, 0, std::vector<int32_t>{0, 1});
  SamplingParams params;
  params.repetition_penalty = 0.5f;
  ASSERT_TRUE(ApplyPenalties(absl::MakeSpan(logits), params, state).ok());
  EXPECT_EQ(logits, (std::vector<float>{4.0f, -0.5f}));
}

// OpenAI / vLLM: logit -= frequency * count + presence * (count > 0), output
// tokens only (token 1 is only in the prompt).
TEST(PenaltiesTest, PresenceAndFrequencyCountOutputOnly) {
  std::vector<float> logits = {2.0f, -1.0f, 0.5f, 3.0f};
  SequenceSamplingState state(1, 0, std::vector<int32_t>{1});
  state.AppendOutputToken(3);
  state.AppendOutputToken(3);
  state.AppendOutputToken(2);
  SamplingParams params;
  params.presence_penalty = 0.5f;
  params.frequency_penalty = 0.25f;
  ASSERT_TRUE(ApplyPenalties(absl::MakeSpan(logits), params, state).ok());
  EXPECT_FLOAT_EQ(logits[0], 2.0f);
  EXPECT_FLOAT_EQ(logits[1], -1.0f);
  EXPECT_FLOAT_EQ(logits[2], 0.5f - 0.25f - 0.5f);
  EXPECT_FLOAT_EQ(logits[3], 3.0f - 2 * 0.25f - 0.5f);
}

TEST(PenaltiesTest, RepetitionThenPresenceAndFrequency) {
  std::vector<float> logits = {2.0f, -1.0f, 0.5f, 3.0f};
  SequenceSamplingState state(1, 0, std::vector<int32_t>{0, 1});
  state.AppendOutputToken(3);
  state.AppendOutputToken(3);
  SamplingParams params;
  params.repetition_penalty = 2.0f;
  params.presence_penalty = 0.5f;
  params.frequency_penalty = 0.25f;
  ASSERT_TRUE(ApplyPenalties(absl::MakeSpan(logits), params, state).ok());
  // Token 3: 3 / 2 = 1.5, then - 2 * 0.25 - 0.5 = 0.5.
  EXPECT_EQ(logits, (std::vector<float>{1.0f, -2.0f, 0.5f, 0.5f}));
}

TEST(PenaltiesTest, RejectsTokenIdsOutsideTheVocabulary) {
  std::vector<float> logits = {1.0f, 2.0f};
  SamplingParams params;
  params.repetition_penalty = 1.5f;
  SequenceSamplingState prompt_out(1, 0, std::vector<int32_t>{2});
  EXPECT_EQ(ApplyPenalties(absl::MakeSpan(logits), params, prompt_out).code(),
            absl::StatusCode::kInvalidArgument);
  SequenceSamplingState output_out(1, 0, {});
  output_out.AppendOutputToken(-1);
  params = SamplingParams();
  params.frequency_penalty = 1.0f;
  EXPECT_EQ(ApplyPenalties(absl::MakeSpan(logits), params, output_out).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PenaltiesTest, UntrackedCountsServeOnlyPenaltyFreeSampling) {
  SequenceSamplingState untracked(1, 0, std::vector<int32_t>{0}, OutputCounts::kUntracked);
  untracked.AppendOutputToken(1);
  untracked.AppendOutputToken(1);
  EXPECT_FALSE(untracked.tracks_output_counts());
  EXPECT_TRUE(untracked.output_counts().empty());
  EXPECT_EQ(untracked.num_output_tokens(), 2);  // the random stream still advances
  std::vector<float> logits = {1.0f, 2.0f};
  EXPECT_TRUE(ApplyPenalties(absl::MakeSpan(logits), SamplingParams(), untracked).ok());
  SamplingParams params;
  params.presence_penalty = 0.5f;
  EXPECT_EQ(ApplyPenalties(absl::MakeSpan(logits), params, untracked).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(logits, (std::vector<float>{1.0f, 2.0f}));

  SequenceSamplingState tracked(1, 0, std::vector<int32_t>{0});
  tracked.AppendOutputToken(1);
  tracked.AppendOutputToken(1);
  EXPECT_EQ(tracked.output_counts().at(1), 2);
  ASSERT_TRUE(ApplyPenalties(absl::MakeSpan(logits), params, tracked).ok());
  EXPECT_EQ(logits, (std::vector<float>{1.0f, 1.5f}));
}

}  // namespace
}  // namespace tern::runtime
