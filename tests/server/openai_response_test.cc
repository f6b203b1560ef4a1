// tern statuses -> HTTP statuses and OpenAI error objects; tern.v1 stream
// messages -> chat.completion / text_completion objects and their SSE chunks.
#include "server/openai/openai_response.h"

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "server/front/status_mapping.h"

namespace tern::server::openai {
namespace {

using json = nlohmann::json;

// The assembler keeps OpenAI's field order (ordered_json); compare contents.
json Plain(const nlohmann::ordered_json& value) { return json::parse(Dump(value)); }

TEST(StatusMappingTest, EveryCodeHasAnHttpStatusAndAnOpenAiType) {
  const struct {
    absl::StatusCode code;
    int http;
    const char* type;
  } cases[] = {
      {absl::StatusCode::kOk, 200, "invalid_request_error"},
      {absl::StatusCode::kInvalidArgument, 400, "invalid_request_error"},
      {absl::StatusCode::kFailedPrecondition, 400, "invalid_request_error"},
      {absl::StatusCode::kOutOfRange, 400, "invalid_request_error"},
      {absl::StatusCode::kUnauthenticated, 401, "authentication_error"},
      {absl::StatusCode::kPermissionDenied, 403, "permission_error"},
      {absl::StatusCode::kNotFound, 404, "not_found_error"},
      {absl::StatusCode::kAlreadyExists, 409, "invalid_request_error"},
      {absl::StatusCode::kAborted, 409, "invalid_request_error"},
      {absl::StatusCode::kResourceExhausted, 429, "rate_limit_error"},
      {absl::StatusCode::kCancelled, 499, "invalid_request_error"},
      {absl::StatusCode::kInternal, 500, "server_error"},
      {absl::StatusCode::kUnknown, 500, "server_error"},
      {absl::StatusCode::kDataLoss, 500, "server_error"},
      {absl::StatusCode::kUnimplemented, 501, "server_error"},
      {absl::StatusCode::kUnavailable, 503, "service_unavailable_error"},
      {absl::StatusCode::kDeadlineExceeded, 504, "timeout_error"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(HttpStatusOf(c.code), c.http) << absl::StatusCodeToString(c.code);
    EXPECT_STREQ(OpenAiErrorType(HttpStatusOf(c.code)), c.type) << absl::StatusCodeToString(c.code);
  }
  EXPECT_STREQ(OpenAiErrorType(413), "invalid_request_error");
  EXPECT_STREQ(OpenAiErrorType(431), "invalid_request_error");
  EXPECT_EQ(StatusCodeSlug(absl::StatusCode::kResourceExhausted), "resource_exhausted");
}

TEST(OpenAiErrorTest, ErrorResponsesHaveOpenAisShape) {
  const HttpResponse bad = ErrorResponse(absl::InvalidArgumentError("temperature: 101 is not in [0, 100]"));
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.content_type, "application/json");
  EXPECT_EQ(json::parse(bad.body), json::parse(R"({"error": {"message": "temperature: 101 is not in [0, 100]",
      "type": "invalid_request_error", "param": "temperature", "code": "invalid_argument"}})"));

  const HttpResponse key = ErrorResponse(absl::UnauthenticatedError("unknown API key"));
  EXPECT_EQ(key.status, 401);
  EXPECT_EQ(json::parse(key.body)["error"]["code"], "invalid_api_key");
  EXPECT_EQ(json::parse(key.body)["error"]["param"], nullptr);
  ASSERT_EQ(key.headers.size(), 1u);
  EXPECT_EQ(key.headers[0].first, "WWW-Authenticate");

  const HttpResponse model = ErrorResponse(absl::NotFoundError("model \"x\" is not served (served: m)"));
  EXPECT_EQ(model.status, 404);
  EXPECT_EQ(json::parse(model.body)["error"]["code"], "model_not_found");
  EXPECT_EQ(json::parse(model.body)["error"]["param"], "model");
  EXPECT_EQ(json::parse(model.body)["error"]["type"], "not_found_error");

  EXPECT_EQ(ErrorResponse(absl::ResourceExhaustedError("queue full")).status, 429);
  EXPECT_EQ(ErrorResponse(absl::UnavailableError("draining")).status, 503);

  const HttpResponse big = TransportErrorResponse(413, "request body is larger than 8 bytes");
  EXPECT_EQ(big.status, 413);
  EXPECT_EQ(json::parse(big.body), json::parse(R"({"error": {"message": "request body is larger than 8 bytes",
      "type": "invalid_request_error", "param": null, "code": "request_too_large"}})"));
  // Invalid UTF-8 in a message never breaks the JSON.
  EXPECT_NO_THROW(json::parse(ErrorResponse(absl::InvalidArgumentError("bad \xff byte")).body));
}

tern::v1::GenerateResponse Chunk(std::initializer_list<std::tuple<int, std::string, tern::v1::FinishReason>> choices,
                                 tern::v1::ChoicePart part = tern::v1::CHOICE_PART_ANSWER) {
  tern::v1::GenerateResponse message;
  message.set_request_id("r1");
  for (const auto& [index, text, finish] : choices) {
    tern::v1::Choice* choice = message.add_choices();
    choice->set_index(index);
    choice->set_part(part);
    choice->set_text(text);
    choice->add_token_ids(7);
    choice->set_finish_reason(finish);
  }
  return message;
}

tern::v1::GenerateResponse Last(int prompt, int completion, int cached = 0) {
  tern::v1::GenerateResponse message;
  message.set_request_id("r1");
  message.set_decoding_mode(tern::v1::DECODING_MODE_NORMAL);
  message.mutable_usage()->set_prompt_tokens(prompt);
  message.mutable_usage()->set_completion_tokens(completion);
  message.mutable_usage()->set_cached_prompt_tokens(cached);
  return message;
}

// The JSON objects of "data: {...}\n\n" events, and whether [DONE] ended them.
std::vector<json> Events(const std::string& text, bool* done) {
  std::vector<json> out;
  *done = false;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = text.find("\n\n", pos);
    EXPECT_NE(end, std::string::npos) << text;
    if (end == std::string::npos) break;
    const std::string event = text.substr(pos, end - pos);
    EXPECT_EQ(event.rfind("data: ", 0), 0u) << event;
    const std::string data = event.substr(6);
    EXPECT_FALSE(*done) << "an event after [DONE]";
    if (data == "[DONE]") {
      *done = true;
    } else {
      out.push_back(json::parse(data));
    }
    pos = end + 2;
  }
  return out;
}

TEST(ResponseAssemblerTest, StreamsChatChunksWithRoleUsageAndDone) {
  ResponseOptions options;
  options.stream = true;
  options.include_usage = true;
  ResponseAssembler assembler(Endpoint::kChatCompletions, "chatcmpl-r1", "m", 1700000000, options, nullptr);
  std::string text = assembler.Events(Chunk({{0, "Hel", tern::v1::FINISH_REASON_UNSPECIFIED}}));
  text += assembler.Events(Chunk({{0, "lo", tern::v1::FINISH_REASON_STOP}}));
  text += assembler.Events(Last(5, 2, 1));
  text += assembler.EndEvents();
  bool done = false;
  const std::vector<json> events = Events(text, &done);
  EXPECT_TRUE(done);
  ASSERT_EQ(events.size(), 3u) << text;
  EXPECT_EQ(events[0], json::parse(R"({"id": "chatcmpl-r1", "object": "chat.completion.chunk", "created": 1700000000,
      "model": "m", "usage": null, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"},
      "logprobs": null, "finish_reason": null}]})"));
  EXPECT_EQ(events[1]["choices"][0]["delta"], json::parse(R"({"content": "lo"})"));
  EXPECT_EQ(events[1]["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(events[2]["choices"], json::array());
  EXPECT_EQ(events[2]["usage"], json::parse(R"({"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7,
      "prompt_tokens_details": {"cached_tokens": 1}})"));
}

TEST(ResponseAssemblerTest, StreamsWithoutUsageUnlessAsked) {
  ResponseOptions options;
  options.stream = true;
  ResponseAssembler assembler(Endpoint::kCompletions, "cmpl-r1", "m", 1, options, nullptr);
  std::string text = assembler.Events(Chunk({{0, "a", tern::v1::FINISH_REASON_UNSPECIFIED},
                                             {1, "b", tern::v1::FINISH_REASON_LENGTH}}));
  text += assembler.Events(Last(1, 2));
  text += assembler.EndEvents();
  bool done = false;
  const std::vector<json> events = Events(text, &done);
  EXPECT_TRUE(done);
  ASSERT_EQ(events.size(), 2u) << text;  // one chunk per choice, no usage chunk
  EXPECT_EQ(events[0], json::parse(R"({"id": "cmpl-r1", "object": "text_completion", "created": 1, "model": "m",
      "choices": [{"index": 0, "text": "a", "logprobs": null, "finish_reason": null}]})"));
  EXPECT_EQ(events[1]["choices"][0]["index"], 1);
  EXPECT_EQ(events[1]["choices"][0]["finish_reason"], "length");
  EXPECT_FALSE(events[1].contains("usage"));
}

TEST(ResponseAssemblerTest, ErrorAfterTheFirstChunkIsAnErrorEvent) {
  ResponseOptions options;
  options.stream = true;
  ResponseAssembler assembler(Endpoint::kChatCompletions, "chatcmpl-r1", "m", 1, options, nullptr);
  std::string text = assembler.Events(Chunk({{0, "x", tern::v1::FINISH_REASON_UNSPECIFIED}}));
  text += assembler.ErrorEvents(absl::InternalError("device fault"));
  bool done = false;
  const std::vector<json> events = Events(text, &done);
  EXPECT_TRUE(done);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1], json::parse(R"({"error": {"message": "device fault", "type": "server_error", "param": null,
      "code": "internal"}})"));
}

TEST(ResponseAssemblerTest, NonStreamedChatCollectsChoicesInOrder) {
  ResponseAssembler assembler(Endpoint::kChatCompletions, "chatcmpl-r1", "m", 3, ResponseOptions(), nullptr);
  assembler.Add(Chunk({{1, "B", tern::v1::FINISH_REASON_UNSPECIFIED}, {0, "A", tern::v1::FINISH_REASON_UNSPECIFIED}}));
  assembler.Add(Chunk({{0, "a", tern::v1::FINISH_REASON_STOP}, {1, "b", tern::v1::FINISH_REASON_LENGTH}}));
  assembler.Add(Last(4, 4));
  EXPECT_EQ(Plain(assembler.Body()), json::parse(R"({"id": "chatcmpl-r1", "object": "chat.completion", "created": 3,
      "model": "m", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Aa"}, "logprobs": null, "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": "Bb"}, "logprobs": null, "finish_reason": "length"}],
      "usage": {"prompt_tokens": 4, "completion_tokens": 4, "total_tokens": 8,
                "prompt_tokens_details": {"cached_tokens": 0}}})"));
}

TEST(ResponseAssemblerTest, LogprobsInChatAndCompletionShapes) {
  tern::v1::GenerateResponse message = Chunk({{0, "hi", tern::v1::FINISH_REASON_STOP}});
  tern::v1::Logprobs* lp = message.mutable_choices(0)->add_logprobs();
  lp->mutable_sampled()->set_token_id(7);
  lp->mutable_sampled()->set_token("hi");
  lp->mutable_sampled()->set_logprob(-0.5f);
  tern::v1::TokenLogprob* alt = lp->add_top();
  alt->set_token_id(8);
  alt->set_token("ho");
  alt->set_logprob(-1.5f);
  ResponseOptions options;
  options.logprobs = true;
  options.top_logprobs = 1;

  ResponseAssembler chat(Endpoint::kChatCompletions, "c", "m", 1, options, nullptr);
  chat.Add(message);
  chat.Add(Last(1, 1));
  EXPECT_EQ(Plain(chat.Body()["choices"][0]["logprobs"]), json::parse(R"({"content": [{"token": "hi", "logprob": -0.5,
      "bytes": [104, 105], "top_logprobs": [{"token": "ho", "logprob": -1.5, "bytes": [104, 111]}]}]})"));

  ResponseAssembler completion(Endpoint::kCompletions, "c", "m", 1, options, nullptr);
  completion.Add(message);
  completion.Add(message);
  completion.Add(Last(1, 2));
  EXPECT_EQ(Plain(completion.Body()["choices"][0]["logprobs"]), json::parse(R"({"tokens": ["hi", "hi"],
      "token_logprobs": [-0.5, -0.5], "top_logprobs": [{"ho": -1.5}, {"ho": -1.5}], "text_offset": [0, 2]})"));
}

TEST(ResponseAssemblerTest, SkeletonOfThoughtIsReasoningThenOrderedPoints) {
  ResponseOptions options;
  options.stream = true;
  ResponseAssembler streamed(Endpoint::kChatCompletions, "c", "m", 1, options, nullptr);
  std::string text = streamed.Events(Chunk({{0, "1. A\n2. B", tern::v1::FINISH_REASON_STOP}}, tern::v1::CHOICE_PART_SKELETON));
  text += streamed.Events(Chunk({{0, "1. A x", tern::v1::FINISH_REASON_STOP}}, tern::v1::CHOICE_PART_POINT));
  text += streamed.Events(Chunk({{1, "2. B y", tern::v1::FINISH_REASON_LENGTH}}, tern::v1::CHOICE_PART_POINT));
  tern::v1::GenerateResponse last = Last(10, 6);
  last.set_decoding_mode(tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT);
  last.mutable_sot()->set_answer("1. A x\n2. B y");
  last.mutable_sot()->add_points()->set_text("A");
  last.mutable_sot()->add_points()->set_text("B");
  text += streamed.Events(last);
  text += streamed.EndEvents();
  bool done = false;
  const std::vector<json> events = Events(text, &done);
  ASSERT_EQ(events.size(), 4u) << text;
  EXPECT_EQ(events[0]["choices"][0]["delta"],
            json::parse(R"({"role": "assistant", "content": "", "reasoning_content": "1. A\n2. B"})"));
  EXPECT_EQ(events[0]["choices"][0]["finish_reason"], nullptr);
  EXPECT_EQ(events[1]["choices"][0]["delta"]["content"], "1. A x");
  EXPECT_EQ(events[2]["choices"][0]["delta"]["content"], "\n2. B y");
  EXPECT_EQ(events[2]["choices"][0]["index"], 0);
  EXPECT_EQ(events[2]["choices"][0]["finish_reason"], nullptr);
  EXPECT_EQ(events[3]["choices"][0]["finish_reason"], "length");  // a point ran out of tokens

  ResponseAssembler whole(Endpoint::kChatCompletions, "c", "m", 1, ResponseOptions(), nullptr);
  whole.Add(Chunk({{0, "1. A\n2. B", tern::v1::FINISH_REASON_STOP}}, tern::v1::CHOICE_PART_SKELETON));
  whole.Add(Chunk({{1, "2. B y  ", tern::v1::FINISH_REASON_STOP}}, tern::v1::CHOICE_PART_POINT));
  whole.Add(Chunk({{0, "1. A x", tern::v1::FINISH_REASON_STOP}}, tern::v1::CHOICE_PART_POINT));
  whole.Add(last);
  const json body = Plain(whole.Body());
  EXPECT_EQ(body["choices"][0]["message"]["content"], "1. A x\n2. B y");
  EXPECT_EQ(body["choices"][0]["message"]["reasoning_content"], "1. A\n2. B");
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(body["tern"]["decoding_mode"], "skeleton_of_thought");
  EXPECT_EQ(body["tern"]["sot"]["points"], 2);
}

}  // namespace
}  // namespace tern::server::openai
