// OpenAI request bodies -> tern.v1 requests: the mapping of every field, the
// errors (each names the OpenAI parameter), and a parser that refuses
// malformed input precisely and never crashes.
#include "server/openai/openai_request.h"

#include <random>

#include "gtest/gtest.h"

namespace tern::server::openai {
namespace {

using ::tern::v1::DECODING_MODE_AUTO;
using ::tern::v1::DECODING_MODE_NORMAL;
using ::tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT;

// The error of parsing `body` as a chat request: "param: why".
std::string ChatError(const std::string& body) {
  auto parsed = ParseChatCompletionRequest(body);
  EXPECT_FALSE(parsed.ok()) << body;
  if (parsed.ok()) return "";
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << parsed.status();
  return std::string(parsed.status().message());
}

std::string CompletionError(const std::string& body) {
  auto parsed = ParseCompletionRequest(body);
  EXPECT_FALSE(parsed.ok()) << body;
  if (parsed.ok()) return "";
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << parsed.status();
  return std::string(parsed.status().message());
}

TEST(OpenAiChatRequestTest, MapsEveryOpenAiField) {
  auto parsed = ParseChatCompletionRequest(R"({
    "model": "m",
    "messages": [{"role": "system", "content": "Be brief."},
                 {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]},
                 {"role": "assistant", "content": null},
                 {"role": "user", "content": "Go"}],
    "temperature": 0.5, "top_p": 0.9, "n": 2, "stop": ["\n\n", "END"], "seed": 7,
    "max_completion_tokens": 32, "presence_penalty": 0.25, "frequency_penalty": -0.5,
    "logprobs": true, "top_logprobs": 3, "stream": true, "stream_options": {"include_usage": true},
    "response_format": {"type": "text"}, "user": "someone", "logit_bias": {}, "tools": null
  })");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const tern::v1::ChatRequest& r = parsed->request;
  EXPECT_EQ(r.model(), "m");
  ASSERT_EQ(r.messages_size(), 4);
  EXPECT_EQ(r.messages(0).role(), "system");
  EXPECT_EQ(r.messages(0).content(), "Be brief.");
  EXPECT_EQ(r.messages(1).content(), "Hi\nthere");
  EXPECT_EQ(r.messages(2).role(), "assistant");
  EXPECT_EQ(r.messages(2).content(), "");
  const tern::v1::SamplingParams& s = r.sampling();
  EXPECT_FLOAT_EQ(s.temperature(), 0.5f);
  EXPECT_FLOAT_EQ(s.top_p(), 0.9f);
  EXPECT_EQ(s.n(), 2);
  ASSERT_EQ(s.stop_size(), 2);
  EXPECT_EQ(s.stop(0), "\n\n");
  EXPECT_EQ(s.stop(1), "END");
  EXPECT_EQ(s.seed(), 7u);
  EXPECT_EQ(s.max_tokens(), 32);
  EXPECT_FLOAT_EQ(s.presence_penalty(), 0.25f);
  EXPECT_FLOAT_EQ(s.frequency_penalty(), -0.5f);
  EXPECT_EQ(s.logprobs(), 3);
  EXPECT_FALSE(s.has_top_k());
  EXPECT_EQ(r.decoding_mode(), DECODING_MODE_NORMAL);  // OpenAI clients get plain decoding unless they ask
  EXPECT_TRUE(parsed->options.stream);
  EXPECT_TRUE(parsed->options.include_usage);
  EXPECT_TRUE(parsed->options.logprobs);
  EXPECT_EQ(parsed->options.top_logprobs, 3);
}

TEST(OpenAiChatRequestTest, DefaultsLeaveSamplingToTheModel) {
  auto parsed = ParseChatCompletionRequest(R"({"model": "m", "messages": [{"role": "user", "content": "x"}]})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const tern::v1::SamplingParams& s = parsed->request.sampling();
  EXPECT_FALSE(s.has_temperature());
  EXPECT_FALSE(s.has_max_tokens());  // chat: the rest of the context
  EXPECT_FALSE(s.has_logprobs());
  EXPECT_FALSE(s.has_n());
  EXPECT_FALSE(parsed->options.stream);
  EXPECT_FALSE(parsed->options.logprobs);
}

TEST(OpenAiChatRequestTest, MapsTernExtras) {
  auto parsed = ParseChatCompletionRequest(R"({
    "model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 8,
    "decoding_mode": "skeleton_of_thought", "sot": {"outline": ["a", "b"], "max_point_tokens": 4},
    "priority": -5, "top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1, "ignore_eos": true,
    "stop_token_ids": [2, 3], "skip_special_tokens": false, "add_generation_prompt": false, "stream": true
  })");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const tern::v1::ChatRequest& r = parsed->request;
  EXPECT_EQ(r.decoding_mode(), DECODING_MODE_SKELETON_OF_THOUGHT);
  ASSERT_EQ(r.sot().outline_size(), 2);
  EXPECT_EQ(r.sot().max_point_tokens(), 4);
  EXPECT_TRUE(r.sot().ordered());  // streamed points come in outline order
  EXPECT_EQ(r.priority(), -5);
  EXPECT_EQ(r.sampling().top_k(), 40);
  EXPECT_FLOAT_EQ(r.sampling().min_p(), 0.05f);
  EXPECT_FLOAT_EQ(r.sampling().repetition_penalty(), 1.1f);
  EXPECT_TRUE(r.sampling().ignore_eos());
  ASSERT_EQ(r.sampling().stop_token_ids_size(), 2);
  EXPECT_TRUE(r.sampling().include_special_tokens());
  EXPECT_FALSE(r.add_generation_prompt());
  EXPECT_EQ(r.sampling().max_tokens(), 8);

  auto automatic = ParseChatCompletionRequest(
      R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "decoding_mode": "auto", "top_k": -1})");
  ASSERT_TRUE(automatic.ok()) << automatic.status();
  EXPECT_EQ(automatic->request.decoding_mode(), DECODING_MODE_AUTO);
  EXPECT_FALSE(automatic->request.sot().ordered());  // not streamed
  EXPECT_EQ(automatic->request.sampling().top_k(), 0);  // vLLM's -1: no limit
}

TEST(OpenAiChatRequestTest, SeedTakesEverySixtyFourBitInteger) {
  const auto seed = [](const std::string& value) {
    auto parsed = ParseChatCompletionRequest(R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": )" +
                                             value + "}");
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    return parsed.ok() ? parsed->request.sampling().seed() : 0;
  };
  EXPECT_EQ(seed("0"), 0u);
  EXPECT_EQ(seed("-1"), ~uint64_t{0});
  EXPECT_EQ(seed("18446744073709551615"), ~uint64_t{0});
  EXPECT_EQ(ChatError(R"({"model": "m", "messages": [], "seed": 18446744073709551616})"),
            "seed: must be an integer, not a number");
  EXPECT_EQ(ChatError(R"({"model": "m", "messages": [], "seed": 1.5})"), "seed: must be an integer, not a number");
}

TEST(OpenAiChatRequestTest, RejectsWhatTernDoesNotImplementNamingIt) {
  const std::string base = R"({"model": "m", "messages": [{"role": "user", "content": "x"}], )";
  EXPECT_EQ(ChatError(base + R"("response_format": {"type": "json_object"}})"),
            R"(response_format: {"type": "json_object"} is not supported; tern generates free text only (type "text"))");
  EXPECT_EQ(ChatError(base + R"("tools": [{"type": "function"}]})"), "tools: is not supported (tern does not call tools)");
  EXPECT_EQ(ChatError(base + R"("logit_bias": {"50256": -100}})"),
            "logit_bias: is not supported (tern does not bias logits)");
  EXPECT_EQ(ChatError(base + R"("temprature": 0.5})"), "temprature: is not a field tern knows");
  EXPECT_EQ(ChatError(base + R"("stream_options": {"include_usage": true}})"),
            "stream_options: is only allowed with stream: true");
  EXPECT_EQ(ChatError(base + R"("stream": true, "stream_options": {"continuous": true}})"),
            "stream_options.continuous: is not a field tern knows");
  EXPECT_EQ(ChatError(base + R"("top_logprobs": 2})"), "top_logprobs: needs logprobs: true");
  EXPECT_EQ(ChatError(base + R"("max_tokens": 5, "max_completion_tokens": 6})"),
            "max_completion_tokens: 6 differs from max_tokens 5; give one of them");
  EXPECT_EQ(ChatError(base + R"("best_of": 3})"),
            "best_of: 3 is not supported: tern returns every choice it samples (best_of must equal n)");
  EXPECT_EQ(ChatError(base + R"("decoding_mode": "fast"})"),
            R"(decoding_mode: "fast" is not one of: normal, auto, skeleton_of_thought)");
  EXPECT_EQ(ChatError(base + R"("sot": {"outline": ["a"], "shuffle": true}})"), "sot.shuffle: is not a field tern knows");
}

TEST(OpenAiChatRequestTest, RejectsWrongTypesNamingTheField) {
  EXPECT_EQ(ChatError(R"({"messages": [{"role": "user", "content": "x"}]})"),
            "model: is required (GET /v1/models lists the served models)");
  EXPECT_EQ(ChatError(R"({"model": "m"})"), "messages: is required");
  EXPECT_EQ(ChatError(R"({"model": 3, "messages": []})"), "model: must be a string, not an integer");
  EXPECT_EQ(ChatError(R"({"model": "m", "messages": {}})"), "messages: must be an array of messages, not an object");
  EXPECT_EQ(ChatError(R"({"model": "m", "messages": ["hi"]})"), "messages[0]: must be an object, not a string");
  EXPECT_EQ(ChatError(R"({"model": "m", "messages": [{"content": "x"}]})"), "messages[0].role: is required");
  EXPECT_EQ(ChatError(R"({"model": "m", "messages": [{"role": "user"}]})"), "messages[0].content: is required");
  EXPECT_EQ(ChatError(R"({"model": "m", "messages": [{"role": "user", "content": "x", "name": "bob"}]})"),
            "messages[0].name: is not a field tern knows");
  EXPECT_EQ(
      ChatError(R"({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})"),
      R"(messages[0].content[0].type: "image_url" is not supported; tern serves text only)");
  EXPECT_EQ(ChatError(R"({"model": "m", "messages": [], "temperature": "hot"})"),
            "temperature: must be a number, not a string");
  EXPECT_EQ(ChatError(R"({"model": "m", "messages": [], "temperature": 1e300})"), "temperature: 1e+300 is out of range");
  EXPECT_EQ(ChatError(R"({"model": "m", "messages": [], "n": 2.5})"), "n: must be an integer, not a number");
  EXPECT_EQ(ChatError(R"({"model": "m", "messages": [], "n": true})"), "n: must be an integer, not a boolean");
  EXPECT_EQ(ChatError(R"({"model": "m", "messages": [], "max_tokens": 4294967296})"),
            "max_tokens: 4294967296 is out of range");
  EXPECT_EQ(ChatError(R"({"model": "m", "messages": [], "stop": 5})"),
            "stop: must be a string or an array of strings, not an integer");
  EXPECT_EQ(ChatError(R"({"model": "m", "messages": [], "stop": ["a", 1]})"), "stop[1]: must be a string, not an integer");
  EXPECT_EQ(ChatError(R"({"model": "m", "messages": [], "stream": "yes"})"), "stream: must be a boolean, not a string");
}

TEST(OpenAiCompletionRequestTest, MapsPromptsAndDefaults) {
  auto text = ParseCompletionRequest(R"({"model": "m", "prompt": "Once upon", "logprobs": 2, "echo": false})");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->request.text(), "Once upon");
  EXPECT_EQ(text->request.sampling().max_tokens(), 16);  // OpenAI's default for completions
  EXPECT_EQ(text->request.sampling().logprobs(), 2);
  EXPECT_TRUE(text->options.logprobs);
  EXPECT_EQ(text->options.top_logprobs, 2);

  auto one = ParseCompletionRequest(R"({"model": "m", "prompt": ["only"], "max_tokens": 3})");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->request.text(), "only");
  EXPECT_EQ(one->request.sampling().max_tokens(), 3);

  auto ids = ParseCompletionRequest(R"({"model": "m", "prompt": [1, 2, 3]})");
  ASSERT_TRUE(ids.ok()) << ids.status();
  ASSERT_EQ(ids->request.token_ids().ids_size(), 3);
  EXPECT_EQ(ids->request.token_ids().ids(2), 3);

  auto nested = ParseCompletionRequest(R"({"model": "m", "prompt": [[4, 5]]})");
  ASSERT_TRUE(nested.ok()) << nested.status();
  EXPECT_EQ(nested->request.token_ids().ids_size(), 2);
}

TEST(OpenAiCompletionRequestTest, RejectsWhatTernDoesNotImplement) {
  EXPECT_EQ(CompletionError(R"({"model": "m"})"), "prompt: is required");
  EXPECT_EQ(CompletionError(R"({"model": "m", "prompt": ["a", "b"]})"),
            "prompt: holds 2 prompts; tern takes one prompt per request (send one request each)");
  EXPECT_EQ(CompletionError(R"({"model": "m", "prompt": "a", "echo": true})"),
            "echo: is not supported (tern returns the completion only)");
  EXPECT_EQ(CompletionError(R"({"model": "m", "prompt": "a", "suffix": "z"})"),
            "suffix: is not supported (tern does not insert text)");
  EXPECT_EQ(CompletionError(R"({"model": "m", "prompt": [1, "a"]})"), "prompt[1]: must be an integer, not a string");
  EXPECT_EQ(CompletionError(R"({"model": "m", "prompt": []})"), "prompt: is empty");
  EXPECT_EQ(CompletionError(R"({"model": "m", "prompt": "a", "messages": []})"), "messages: is not a field tern knows");
  EXPECT_EQ(CompletionError(R"({"model": "m", "prompt": "a", "logprobs": true})"),
            "logprobs: must be an integer, not a boolean");
}

TEST(OpenAiJsonTest, MalformedBodiesAreRefusedPrecisely) {
  EXPECT_EQ(ChatError(""), "the request body is empty; send a JSON object");
  EXPECT_EQ(ChatError(" \n"), "the request body is empty; send a JSON object");
  const std::string trailing = ChatError(R"({"model": "m",})");
  EXPECT_EQ(trailing.rfind("the request body is not valid JSON: parse error at line 1, column 15", 0), 0u) << trailing;
  const std::string second_line = ChatError("{\"model\": \"m\",\n \"messages\": [}");
  EXPECT_EQ(second_line.rfind("the request body is not valid JSON: parse error at line 2, column 15", 0), 0u)
      << second_line;
  EXPECT_NE(ChatError("{\"model\": \"\xff\"}").find("ill-formed UTF-8"), std::string::npos);
  EXPECT_EQ(ChatError("[1, 2]"), "the request body must be a JSON object, not an array");
  EXPECT_EQ(ChatError("\"text\""), "the request body must be a JSON object, not a string");
  EXPECT_EQ(ChatError(R"({"a": 1} {"b": 2})").rfind("the request body is not valid JSON: parse error", 0), 0u);
  EXPECT_EQ(ChatError(R"({"model": "m", "n": 1e999})").rfind("the request body is not valid JSON", 0), 0u);
  const std::string deep = std::string(1000000, '[') + std::string(1000000, ']');
  EXPECT_EQ(ChatError(deep), "the request body nests arrays and objects deeper than 32 levels");
  std::string nested = R"({"model": "m", "messages": [], "sot": )";
  for (int i = 0; i < 40; ++i) nested += R"({"a": )";
  nested += "1" + std::string(40, '}') + "}";
  EXPECT_EQ(ChatError(nested), "the request body nests arrays and objects deeper than 32 levels");
  // Just inside the limit is fine as far as JSON goes (the field is what is wrong).
  std::string shallow = R"({"model": "m", "messages": [], "sot": {"outline": )";
  for (int i = 0; i < 29; ++i) shallow += "[";
  shallow += std::string(29, ']') + "}}";
  EXPECT_EQ(ChatError(shallow), "sot.outline[0]: must be a string, not an array");
}

// Random bytes and random edits of a valid body: the parser answers, it
// never throws or crashes.
TEST(OpenAiJsonTest, NeverCrashesOnGarbage) {
  const std::string valid = R"({"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a"], )"
                            R"("temperature": 0.5, "stream": true, "stream_options": {"include_usage": true}})";
  std::mt19937 rng(42);
  for (int round = 0; round < 3000; ++round) {
    std::string body = valid;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % body.size();
      switch (rng() % 3) {
        case 0: body[at] = static_cast<char>(rng() % 256); break;
        case 1: body.erase(at, 1 + rng() % 3); break;
        default: body.insert(at, 1, "{}[],:\"\\0e-"[rng() % 11]); break;
      }
      if (body.empty()) body = "{";
    }
    (void)ParseChatCompletionRequest(body);
    (void)ParseCompletionRequest(body);
  }
  for (int round = 0; round < 1000; ++round) {
    std::string body(rng() % 64, '\0');
    for (char& ch : body) ch = static_cast<char>(rng() % 256);
    EXPECT_FALSE(ParseChatCompletionRequest(body).ok());
  }
}

TEST(OpenAiTermsTest, FrontErrorsNameOpenAiParameters) {
  const auto chat = [](const std::string& message) {
    return std::string(InOpenAiTerms(absl::InvalidArgumentError(message), Endpoint::kChatCompletions).message());
  };
  const auto completion = [](const std::string& message) {
    return std::string(InOpenAiTerms(absl::InvalidArgumentError(message), Endpoint::kCompletions).message());
  };
  EXPECT_EQ(chat("sampling.temperature: 101 is not in [0, 100]"), "temperature: 101 is not in [0, 100]");
  EXPECT_EQ(chat("sampling.logprobs: 30 is not in [0, 20]"), "top_logprobs: 30 is not in [0, 20]");
  EXPECT_EQ(completion("sampling.logprobs: 30 is not in [0, 20]"), "logprobs: 30 is not in [0, 20]");
  EXPECT_EQ(chat("sampling.stop[0]: is empty"), "stop[0]: is empty");
  EXPECT_EQ(completion("text: is empty"), "prompt: is empty");
  EXPECT_EQ(completion("token_ids[2]: is negative"), "prompt[2]: is negative");
  EXPECT_EQ(chat("messages[1].role: \"bot\" is not one of: system, user, assistant, tool"),
            "messages[1].role: \"bot\" is not one of: system, user, assistant, tool");
  EXPECT_EQ(chat("textual thing"), "textual thing");
  const absl::Status unavailable = absl::UnavailableError("sampling.n: draining");
  EXPECT_EQ(InOpenAiTerms(unavailable, Endpoint::kChatCompletions).code(), absl::StatusCode::kUnavailable);

  EXPECT_EQ(ParamOf(absl::InvalidArgumentError("messages[1].role: bad")), "messages[1].role");
  EXPECT_EQ(ParamOf(absl::InvalidArgumentError("temperature: bad")), "temperature");
  EXPECT_EQ(ParamOf(absl::InvalidArgumentError("the request body is not valid JSON: x")), "");
  EXPECT_EQ(ParamOf(absl::UnauthenticatedError("unknown API key")), "");
}

}  // namespace
}  // namespace tern::server::openai
