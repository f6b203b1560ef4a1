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


// Every size a client controls (docs/limits.md): the value at the limit is
// accepted, one past it is INVALID_ARGUMENT naming the field and the limit.
TEST(RequestValidationTest, EverySizeLimitAcceptsItsLimitAndRejectsOnePast) {
  const RequestLimits limits;
  auto expect_limit = [](const absl::Status& at, const absl::Status& past, const std::string& field,
                         const std::string& says) {
    EXPECT_TRUE(at.ok()) << field << ": " << at;
    EXPECT_EQ(past.code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_NE(past.message().find(field), std::string::npos) << past;
    EXPECT_NE(past.message().find(says), std::string::npos) << past;
  };
  auto generate = [&](const std::function<void(tern::v1::GenerateRequest&)>& change) {
    auto request = ValidRequest();
    change(request);
    return ValidateGenerateRequest(request, limits);
  };
  expect_limit(generate([](auto& r) { r.set_text(std::string(1 << 20, 'a')); }),
               generate([](auto& r) { r.set_text(std::string((1 << 20) + 1, 'a')); }), "text",
               "is 1048577 bytes; the limit is 1048576");
  auto stops = [](int count, int bytes) {
    return [=](tern::v1::GenerateRequest& r) {
      for (int i = 0; i < count; ++i) r.mutable_sampling()->add_stop(std::string(bytes, 'a' + i % 26));
    };
  };
  expect_limit(generate(stops(16, 1)), generate(stops(17, 1)), "sampling.stop", "17 stop strings; the limit is 16");
  expect_limit(generate(stops(1, 256)), generate(stops(1, 257)), "sampling.stop[0]",
               "is 257 bytes; the limit is 256");
  auto stop_ids = [](int count) {
    return [=](tern::v1::GenerateRequest& r) {
      for (int i = 0; i < count; ++i) r.mutable_sampling()->add_stop_token_ids(i);
    };
  };
  expect_limit(generate(stop_ids(256)), generate(stop_ids(257)), "sampling.stop_token_ids",
               "257 ids; the limit is 256");
  expect_limit(generate([](auto& r) { r.mutable_sampling()->set_n(16); }),
               generate([](auto& r) { r.mutable_sampling()->set_n(17); }), "sampling.n", "17 is not in [1, 16]");
  expect_limit(generate([](auto& r) { r.mutable_sampling()->set_logprobs(20); }),
               generate([](auto& r) { r.mutable_sampling()->set_logprobs(21); }), "sampling.logprobs",
               "21 is not in [0, 20]");
  expect_limit(generate([](auto& r) { r.set_request_id(std::string(128, 'r')); }),
               generate([](auto& r) { r.set_request_id(std::string(129, 'r')); }), "request_id",
               "is 129 bytes; the limit is 128");
  auto outline = [](int points, int bytes) {
    return [=](tern::v1::GenerateRequest& r) {
      for (int i = 0; i < points; ++i) r.mutable_sot()->add_outline(std::string(bytes, 'p'));
    };
  };
  expect_limit(generate(outline(64, 1)), generate(outline(65, 1)), "sot.outline", "65 points; the limit is 64");
  expect_limit(generate(outline(2, 1024)), generate(outline(2, 1025)), "sot.outline[0]",
               "is 1025 bytes; the limit is 1024");
  expect_limit(generate([](auto& r) { r.mutable_sot()->set_max_point_tokens(4096); }),
               generate([](auto& r) { r.mutable_sot()->set_max_point_tokens(4097); }), "sot.max_point_tokens",
               "4097 is not in [1, 4096]");
  EXPECT_NE(generate([](auto& r) {
              r.mutable_sot()->add_outline("one\ntwo");
              r.mutable_sot()->add_outline("three");
            }).message().find("sot.outline[0]: holds a line break"),
            std::string::npos);

  // Configured limits replace the defaults.
  tern::v1::LimitsConfig config;
  config.set_max_stop_strings(2);
  config.set_max_tokens(100);
  const RequestLimits configured = RequestLimits::FromConfig(config);
  auto with = [&](const std::function<void(tern::v1::GenerateRequest&)>& change) {
    auto request = ValidRequest();
    change(request);
    return ValidateGenerateRequest(request, configured);
  };
  expect_limit(with(stops(2, 1)), with(stops(3, 1)), "sampling.stop", "3 stop strings; the limit is 2");
  expect_limit(with([](auto& r) { r.mutable_sampling()->set_max_tokens(100); }),
               with([](auto& r) { r.mutable_sampling()->set_max_tokens(101); }), "sampling.max_tokens",
               "101 exceeds the server limit 100");

  // Chat: message count and the bytes of all contents together.
  auto chat = [&](int messages, int bytes_each) {
    tern::v1::ChatRequest request;
    request.set_model("m");
    for (int i = 0; i < messages; ++i) {
      auto* message = request.add_messages();
      message->set_role("user");
      message->set_content(std::string(bytes_each, 'c'));
    }
    return ValidateChatRequest(request, limits);
  };
  expect_limit(chat(1024, 1), chat(1025, 1), "messages", "1025 messages; the limit is 1024");
  expect_limit(chat(2, 1 << 19), chat(3, 1 << 19), "messages",
               "hold 1572864 bytes of content; the limit is 1048576");

  // Tokenize and Detokenize.
  tern::v1::TokenizeRequest tokenize;
  tokenize.set_model("m");
  tokenize.set_text(std::string(1 << 20, 't'));
  const absl::Status tokenize_at = ValidateTokenizeRequest(tokenize, limits);
  tokenize.set_text(std::string((1 << 20) + 1, 't'));
  expect_limit(tokenize_at, ValidateTokenizeRequest(tokenize, limits), "text", "the limit is 1048576");
  tern::v1::DetokenizeRequest detokenize;
  detokenize.set_model("m");
  detokenize.add_ids(0);
  const absl::Status detokenize_ok = ValidateDetokenizeRequest(detokenize, limits);
  detokenize.add_ids(-3);
  expect_limit(detokenize_ok, ValidateDetokenizeRequest(detokenize, limits), "ids[1]", "is negative");

  // Images: sides, steps, batch, prompt bytes.
  auto image = [&](const std::function<void(tern::v1::GenerateImageRequest&)>& change) {
    tern::v1::GenerateImageRequest request;
    request.set_model("dit");
    request.set_class_label(1);
    change(request);
    return ValidateGenerateImageRequest(request, limits);
  };
  expect_limit(image([](auto& r) { r.set_width(4096); }), image([](auto& r) { r.set_width(4097); }), "width",
               "4097 is not in [0, 4096]");
  expect_limit(image([](auto& r) { r.set_height(4096); }), image([](auto& r) { r.set_height(4097); }), "height",
               "4097 is not in [0, 4096]");
  expect_limit(image([](auto& r) { r.set_steps(1000); }), image([](auto& r) { r.set_steps(1001); }), "steps",
               "1001 is not in [0, 1000]");
  expect_limit(image([](auto& r) { r.set_batch(16); }), image([](auto& r) { r.set_batch(17); }), "batch",
               "17 images is over the limit of 16 a request");
  expect_limit(image([](auto& r) { r.set_prompt(std::string(1 << 20, 'i')); }),
               image([](auto& r) { r.set_prompt(std::string((1 << 20) + 1, 'i')); }), "prompt",
               "is 1048577 bytes; the limit is 1048576");
}

}  // namespace
}  // namespace tern::server
