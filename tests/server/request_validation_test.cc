#include "server/validation/request_validation.h"

#include <cmath>
#include <functional>
#include <limits>

#include "gtest/gtest.h"

namespace tern::server {
namespace {

tern::v1::GenerateRequest ValidRequest() {
  tern::v1::GenerateRequest request;
  request.set_model("m");
  request.set_text("hello");
  return request;
}

void ExpectInvalid(const tern::v1::GenerateRequest& request, const std::string& field) {
  const absl::Status status = ValidateGenerateRequest(request, RequestLimits{});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << field;
  EXPECT_NE(status.message().find(field), std::string::npos) << status.message();
}

TEST(RequestValidationTest, AcceptsMinimalAndFullRequests) {
  EXPECT_TRUE(ValidateGenerateRequest(ValidRequest(), RequestLimits{}).ok());
  auto request = ValidRequest();
  auto* s = request.mutable_sampling();
  s->set_temperature(0.7f);
  s->set_top_p(0.9f);
  s->set_top_k(40);
  s->set_min_p(0.05f);
  s->set_repetition_penalty(1.1f);
  s->set_presence_penalty(-2.0f);
  s->set_frequency_penalty(2.0f);
  s->set_seed(7);
  s->add_stop("\n\n");
  s->add_stop_token_ids(2);
  s->set_max_tokens(128);
  s->set_n(4);
  s->set_logprobs(5);
  request.set_priority(-100);
  request.set_decoding_mode(tern::v1::DECODING_MODE_AUTO);
  EXPECT_TRUE(ValidateGenerateRequest(request, RequestLimits{}).ok());
  // Skeleton-of-Thought with its options (one answer: n = 1).
  s->set_n(1);
  request.set_decoding_mode(tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT);
  request.mutable_sot()->add_outline("First point");
  request.mutable_sot()->add_outline("Second point");
  request.mutable_sot()->set_ordered(true);
  request.mutable_sot()->set_max_point_tokens(4096);
  EXPECT_TRUE(ValidateGenerateRequest(request, RequestLimits{}).ok());
}

void ExpectInvalidStatus(const absl::Status& status, const std::string& field) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << field;
  EXPECT_NE(status.message().find(field), std::string::npos) << status.message();
}

TEST(RequestValidationTest, RejectsSkeletonOfThoughtOptionsThatCannotWork) {
  const auto sot = [](tern::v1::DecodingMode mode, const std::function<void(tern::v1::GenerateRequest&)>& change) {
    auto request = ValidRequest();
    request.set_decoding_mode(mode);
    change(request);
    return ValidateGenerateRequest(request, RequestLimits{});
  };
  const auto kSot = tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT;
  ExpectInvalidStatus(sot(kSot, [](auto& r) { r.mutable_sampling()->set_n(2); }), "sampling.n");
  ExpectInvalidStatus(sot(tern::v1::DECODING_MODE_NORMAL, [](auto& r) { r.mutable_sot()->add_outline("a"); }), "sot");
  ExpectInvalidStatus(sot(kSot, [](auto& r) { r.mutable_sot()->add_outline("only one"); }), "sot.outline");
  ExpectInvalidStatus(sot(kSot,
                    [](auto& r) {
                      for (int i = 0; i < 65; ++i) r.mutable_sot()->add_outline("p");
                    }),
                "sot.outline");
  ExpectInvalidStatus(sot(kSot,
                    [](auto& r) {
                      r.mutable_sot()->add_outline(std::string(1025, 'x'));
                      r.mutable_sot()->add_outline("b");
                    }),
                "sot.outline[0]");
  ExpectInvalidStatus(sot(kSot,
                    [](auto& r) {
                      r.mutable_sot()->add_outline("a");
                      r.mutable_sot()->add_outline(" \t ");
                    }),
                "sot.outline[1]");
  ExpectInvalidStatus(sot(kSot, [](auto& r) { r.mutable_sot()->set_max_point_tokens(4097); }), "sot.max_point_tokens");
  ExpectInvalidStatus(sot(kSot, [](auto& r) { r.mutable_token_ids()->add_ids(3); }), "token_ids");
  // AUTO with an outline means SoT: the same rules.
  ExpectInvalidStatus(sot(tern::v1::DECODING_MODE_AUTO,
                    [](auto& r) {
                      r.mutable_sot()->add_outline("a");
                      r.mutable_sot()->add_outline("b");
                      r.mutable_sampling()->set_n(3);
                    }),
                "sampling.n");
}

TEST(RequestValidationTest, RejectsOutOfRangeSamplingWithoutClamping) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    std::function<void(tern::v1::SamplingParams*)> set;
    const char* field;
  };
  const std::vector<Case> cases = {
      {[&](auto* s) { s->set_temperature(nan); }, "sampling.temperature"},
      {[&](auto* s) { s->set_temperature(-0.1f); }, "sampling.temperature"},
      {[&](auto* s) { s->set_top_p(0.0f); }, "sampling.top_p"},
      {[&](auto* s) { s->set_top_p(1.01f); }, "sampling.top_p"},
      {[&](auto* s) { s->set_top_k(-1); }, "sampling.top_k"},
      {[&](auto* s) { s->set_min_p(1.5f); }, "sampling.min_p"},
      {[&](auto* s) { s->set_repetition_penalty(0.0f); }, "sampling.repetition_penalty"},
      {[&](auto* s) { s->set_repetition_penalty(inf); }, "sampling.repetition_penalty"},
      {[&](auto* s) { s->set_presence_penalty(2.5f); }, "sampling.presence_penalty"},
      {[&](auto* s) { s->set_frequency_penalty(-3.0f); }, "sampling.frequency_penalty"},
      {[&](auto* s) { s->add_stop(""); }, "sampling.stop[0]"},
      {[&](auto* s) { s->add_stop(std::string(300, 'x')); }, "sampling.stop[0]"},
      {[&](auto* s) { for (int i = 0; i < 17; ++i) s->add_stop("x"); }, "sampling.stop"},
      {[&](auto* s) { s->add_stop_token_ids(-5); }, "sampling.stop_token_ids[0]"},
      {[&](auto* s) { s->set_max_tokens(0); }, "sampling.max_tokens"},
      {[&](auto* s) { s->set_n(0); }, "sampling.n"},
      {[&](auto* s) { s->set_n(17); }, "sampling.n"},
      {[&](auto* s) { s->set_logprobs(21); }, "sampling.logprobs"},
  };
  for (const Case& c : cases) {
    auto request = ValidRequest();
    c.set(request.mutable_sampling());
    ExpectInvalid(request, c.field);
  }
}

TEST(RequestValidationTest, RejectsBadPromptsAndEnvelope) {
  tern::v1::GenerateRequest no_prompt;
  no_prompt.set_model("m");
  ExpectInvalid(no_prompt, "prompt");
  auto empty = ValidRequest();
  empty.set_text("");
  ExpectInvalid(empty, "text");
  auto no_model = ValidRequest();
  no_model.clear_model();
  ExpectInvalid(no_model, "model");
  auto negative_id = ValidRequest();
  negative_id.mutable_token_ids()->add_ids(3);
  negative_id.mutable_token_ids()->add_ids(-1);
  ExpectInvalid(negative_id, "token_ids[1]");
  auto priority = ValidRequest();
  priority.set_priority(101);
  ExpectInvalid(priority, "priority");
  auto mode = ValidRequest();
  mode.set_decoding_mode(static_cast<tern::v1::DecodingMode>(42));
  ExpectInvalid(mode, "decoding_mode");
  auto id = ValidRequest();
  id.set_request_id(std::string(129, 'r'));
  ExpectInvalid(id, "request_id");
}

TEST(RequestValidationTest, HonoursConfiguredLimits) {
  tern::v1::LimitsConfig config;
  config.set_max_prompt_bytes(4);
  config.set_max_tokens(10);
  config.set_max_n(2);
  const RequestLimits limits = RequestLimits::FromConfig(config);
  auto request = ValidRequest();  // "hello" is 5 bytes
  EXPECT_EQ(ValidateGenerateRequest(request, limits).code(), absl::StatusCode::kInvalidArgument);
  request.set_text("hi");
  request.mutable_sampling()->set_max_tokens(11);
  EXPECT_EQ(ValidateGenerateRequest(request, limits).code(), absl::StatusCode::kInvalidArgument);
  request.mutable_sampling()->set_max_tokens(10);
  request.mutable_sampling()->set_n(3);
  EXPECT_EQ(ValidateGenerateRequest(request, limits).code(), absl::StatusCode::kInvalidArgument);
  request.mutable_sampling()->set_n(2);
  EXPECT_TRUE(ValidateGenerateRequest(request, limits).ok());
}

TEST(RequestValidationTest, ChatRolesAndImages) {
  tern::v1::ChatRequest chat;
  chat.set_model("m");
  EXPECT_FALSE(ValidateChatRequest(chat, RequestLimits{}).ok());
  auto* message = chat.add_messages();
  message->set_role("user");
  message->set_content("hi");
  EXPECT_TRUE(ValidateChatRequest(chat, RequestLimits{}).ok());
  message->set_role("wizard");
  const absl::Status role = ValidateChatRequest(chat, RequestLimits{});
  EXPECT_NE(role.message().find("messages[0].role"), std::string::npos);

  tern::v1::GenerateImageRequest image;
  image.set_model("dit");
  EXPECT_FALSE(ValidateGenerateImageRequest(image, RequestLimits{}).ok());  // no condition
  image.set_class_label(207);
  EXPECT_TRUE(ValidateGenerateImageRequest(image, RequestLimits{}).ok());
  image.set_steps(5000);
  EXPECT_NE(ValidateGenerateImageRequest(image, RequestLimits{}).message().find("steps"),
            std::string::npos);
  image.set_steps(50);
  image.set_guidance_scale(std::numeric_limits<float>::quiet_NaN());
  EXPECT_NE(ValidateGenerateImageRequest(image, RequestLimits{}).message().find("guidance_scale"),
            std::string::npos);
}

}  // namespace
}  // namespace tern::server
