#include "runtime/sampling/sampling_params.h"

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace tern::runtime {
namespace {

constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

struct BadCase {
  std::string field;
  std::function<void(SamplingParams&)> mutate;
};

TEST(SamplingParamsTest, DefaultsAreValid) { EXPECT_TRUE(SamplingParams().Validate().ok()); }

TEST(SamplingParamsTest, AcceptsRangeBoundaries) {
  SamplingParams p;
  p.temperature = 0.0f;
  p.top_p = 1.0f;
  p.top_k = 0;
  p.min_p = 1.0f;
  p.repetition_penalty = 100.0f;
  p.presence_penalty = -2.0f;
  p.frequency_penalty = 2.0f;
  p.max_tokens = 1;
  p.logprobs = 20;
  p.stop = {"x"};
  p.stop_token_ids = {0};
  EXPECT_TRUE(p.Validate().ok()) << p.Validate();
  p.temperature = 100.0f;
  p.min_p = 0.0f;
  p.presence_penalty = 2.0f;
  p.frequency_penalty = -2.0f;
  p.logprobs = 0;
  p.top_k = 1 << 30;
  EXPECT_TRUE(p.Validate().ok()) << p.Validate();
}

TEST(SamplingParamsTest, RejectsBadValuesNamingTheField) {
  const std::vector<BadCase> cases = {
      {"temperature", [](SamplingParams& p) { p.temperature = kNan; }},
      {"temperature", [](SamplingParams& p) { p.temperature = -0.1f; }},
      {"temperature", [](SamplingParams& p) { p.temperature = 100.5f; }},
      {"temperature", [](SamplingParams& p) { p.temperature = kInf; }},
      {"top_p", [](SamplingParams& p) { p.top_p = 0.0f; }},
      {"top_p", [](SamplingParams& p) { p.top_p = 1.0001f; }},
      {"top_p", [](SamplingParams& p) { p.top_p = kNan; }},
      {"top_k", [](SamplingParams& p) { p.top_k = -1; }},
      {"min_p", [](SamplingParams& p) { p.min_p = -0.01f; }},
      {"min_p", [](SamplingParams& p) { p.min_p = 1.01f; }},
      {"min_p", [](SamplingParams& p) { p.min_p = kNan; }},
      {"repetition_penalty", [](SamplingParams& p) { p.repetition_penalty = 0.0f; }},
      {"repetition_penalty", [](SamplingParams& p) { p.repetition_penalty = -1.0f; }},
      {"repetition_penalty", [](SamplingParams& p) { p.repetition_penalty = kInf; }},
      {"repetition_penalty", [](SamplingParams& p) { p.repetition_penalty = kNan; }},
      {"presence_penalty", [](SamplingParams& p) { p.presence_penalty = 2.5f; }},
      {"presence_penalty", [](SamplingParams& p) { p.presence_penalty = kNan; }},
      {"frequency_penalty", [](SamplingParams& p) { p.frequency_penalty = -3.0f; }},
      {"frequency_penalty", [](SamplingParams& p) { p.frequency_penalty = -kInf; }},
      {"stop[1]", [](SamplingParams& p) { p.stop = {"ok", ""}; }},
      {"stop_token_ids[0]", [](SamplingParams& p) { p.stop_token_ids = {-5}; }},
      {"max_tokens", [](SamplingParams& p) { p.max_tokens = 0; }},
      {"n", [](SamplingParams& p) { p.n = 0; }},
      {"logprobs", [](SamplingParams& p) { p.logprobs = 21; }},
      {"logprobs", [](SamplingParams& p) { p.logprobs = -1; }},
  };
  for (const BadCase& c : cases) {
    SamplingParams p;
    c.mutate(p);
    const absl::Status status = p.Validate();
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_NE(std::string(status.message()).find("sampling." + c.field + ":"), std::string::npos)
        << status;
  }
}

TEST(SamplingParamsTest, HasPenaltiesOnlyWhenNotNeutral) {
  SamplingParams p;
  EXPECT_FALSE(p.HasPenalties());
  p.repetition_penalty = 1.1f;
  EXPECT_TRUE(p.HasPenalties());
  p = SamplingParams();
  p.presence_penalty = -0.5f;
  EXPECT_TRUE(p.HasPenalties());
  p = SamplingParams();
  p.frequency_penalty = 0.5f;
  EXPECT_TRUE(p.HasPenalties());
}

}  // namespace
}  // namespace tern::runtime
