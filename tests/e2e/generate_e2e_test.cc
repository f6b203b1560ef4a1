// End-to-end: Generate and Chat against the real ternd serving a tiny random
// Llama on loopback, over real gRPC. Streaming, n > 1, stop strings,
// logprobs, cancellation, deadlines, the queue bound, Skeleton-of-Thought,
// and the `tern chat` verb. generate_bad_request_e2e_test.cc sends bad
// requests while another request streams; generate_fault_e2e_test.cc injects
// faults while others stream; generate_e2e_helpers.h holds what they share.
#include <cmath>
#include <map>
#include <memory>
#include <set>
#include <thread>

#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tern/v1/llm.grpc.pb.h"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/e2e_helpers.h"
#include "tests/e2e/generate_e2e_helpers.h"

namespace tern::testing {
namespace {

TEST(GenerateE2eTest, StreamsChunksWhoseTextIsTheDetokenizedIds) {
  TempDir dir;
  DaemonProcess daemon = StartOrDie({"--model", MakeTinyModel(dir, kModel)});
  auto stub = tern::v1::Llm::NewStub(Connect(daemon));
  const std::string prompt = "The capital of France is";
  tern::v1::GenerateRequest request = Greedy(prompt, 24);
  request.set_request_id("stream-1");
  const StreamResult result = Stream(*stub, request);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  ASSERT_EQ(result.choices.size(), 1u);
  const ChoiceResult& choice = result.choices.at(0);
  EXPECT_EQ(choice.token_ids.size(), 24u);
  EXPECT_EQ(choice.finish, tern::v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(choice.finish_chunks, 1);
  EXPECT_TRUE(choice.logprobs.empty()) << "logprobs only when asked for";
  // Tokens arrive as they are sampled, not in one message at the end.
  EXPECT_GT(result.chunks, 12);
  EXPECT_EQ(result.usage_messages, 1);
  for (const std::string& id : result.request_ids) EXPECT_EQ(id, "stream-1");

  // The streamed text is what Detokenize makes of the ids, continuing the prompt.
  const std::vector<int32_t> prompt_ids = Tokenize(*stub, prompt);
  std::vector<int32_t> all = prompt_ids;
  all.insert(all.end(), choice.token_ids.begin(), choice.token_ids.end());
  const std::string prompt_text = Detokenize(*stub, prompt_ids);
  const std::string full_text = Detokenize(*stub, all);
  ASSERT_EQ(full_text.substr(0, prompt_text.size()), prompt_text);
  EXPECT_EQ(choice.text, full_text.substr(prompt_text.size()));
  EXPECT_FALSE(choice.text.empty());
  EXPECT_EQ(result.usage.prompt_tokens(), static_cast<int>(prompt_ids.size()));
  EXPECT_EQ(result.usage.completion_tokens(), 24);

  // The same ids as a token_ids prompt give the same stream.
  tern::v1::GenerateRequest by_ids = Greedy("", 24);
  for (int32_t id : prompt_ids) by_ids.mutable_token_ids()->add_ids(id);
  const StreamResult again = Stream(*stub, by_ids);
  ASSERT_TRUE(again.status.ok()) << again.status.error_message();
  EXPECT_EQ(again.choices.at(0).token_ids, choice.token_ids);
  EXPECT_EQ(again.choices.at(0).text, choice.text);
}

TEST(GenerateE2eTest, NChoicesAreIndexedAndEachFinishesOnce) {
  TempDir dir;
  DaemonProcess daemon = StartOrDie({"--model", MakeTinyModel(dir, kModel)});
  auto stub = tern::v1::Llm::NewStub(Connect(daemon));
  tern::v1::GenerateRequest request = Greedy("Once upon a time", 12);
  request.mutable_sampling()->set_temperature(1.0f);
  request.mutable_sampling()->set_seed(7);
  request.mutable_sampling()->set_n(3);
  const StreamResult result = Stream(*stub, request);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  ASSERT_EQ(result.choices.size(), 3u);
  std::set<std::vector<int32_t>> distinct;
  for (int index = 0; index < 3; ++index) {
    ASSERT_TRUE(result.choices.count(index)) << "choice " << index;
    const ChoiceResult& choice = result.choices.at(index);
    EXPECT_EQ(choice.finish_chunks, 1) << "choice " << index;
    EXPECT_EQ(choice.finish, tern::v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(choice.token_ids.size(), 12u);
    distinct.insert(choice.token_ids);
  }
  EXPECT_GT(distinct.size(), 1u) << "each choice samples its own stream";
  EXPECT_EQ(result.usage.completion_tokens(), 36);
  EXPECT_EQ(result.usage_messages, 1);

  // Same seed, same choices.
  const StreamResult again = Stream(*stub, request);
  ASSERT_TRUE(again.status.ok());
  for (int index = 0; index < 3; ++index) {
    EXPECT_EQ(again.choices.at(index).token_ids, result.choices.at(index).token_ids);
  }

  // Greedy: every forked choice equals the single greedy completion.
  const StreamResult single = Stream(*stub, Greedy("Once upon a time", 12));
  tern::v1::GenerateRequest greedy_n = Greedy("Once upon a time", 12);
  greedy_n.mutable_sampling()->set_n(2);
  const StreamResult forked = Stream(*stub, greedy_n);
  ASSERT_TRUE(forked.status.ok());
  ASSERT_EQ(forked.choices.size(), 2u);
  EXPECT_EQ(forked.choices.at(0).token_ids, single.choices.at(0).token_ids);
  EXPECT_EQ(forked.choices.at(1).token_ids, single.choices.at(0).token_ids);
  EXPECT_EQ(forked.choices.at(1).text, single.choices.at(0).text);
}

// Length of the UTF-8 character that starts with `lead`.
size_t Utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  return 4;
}

TEST(GenerateE2eTest, StopStringEndsTheChoiceAndIsNotReturned) {
  TempDir dir;
  DaemonProcess daemon = StartOrDie({"--model", MakeTinyModel(dir, kModel)});
  auto stub = tern::v1::Llm::NewStub(Connect(daemon));
  const tern::v1::GenerateRequest request = Greedy("The weather today", 32);
  const StreamResult plain = Stream(*stub, request);
  ASSERT_TRUE(plain.status.ok()) << plain.status.error_message();
  const std::string text = plain.choices.at(0).text;
  ASSERT_GT(text.size(), 8u) << text;

  // A stop string of two whole characters from the middle of the output,
  // whose first occurrence is not at the start.
  std::string stop;
  size_t first = std::string::npos;
  for (size_t p = text.size() / 2; p < text.size() && stop.empty(); ++p) {
    if ((static_cast<unsigned char>(text[p]) & 0xC0) == 0x80) continue;  // not a character start
    const size_t one = Utf8Length(text[p]);
    if (p + one >= text.size()) break;
    const size_t two = one + Utf8Length(text[p + one]);
    const std::string candidate = text.substr(p, two);
    const size_t at = text.find(candidate);
    if (at != std::string::npos && at > 0 && p + two <= text.size()) {
      stop = candidate;
      first = at;
    }
  }
  ASSERT_FALSE(stop.empty()) << "no usable stop string in \"" << text << "\"";

  tern::v1::GenerateRequest with_stop = request;
  with_stop.mutable_sampling()->add_stop("never appears \u00a7\u00a7");
  with_stop.mutable_sampling()->add_stop(stop);
  const StreamResult stopped = Stream(*stub, with_stop);
  ASSERT_TRUE(stopped.status.ok()) << stopped.status.error_message();
  const ChoiceResult& choice = stopped.choices.at(0);
  EXPECT_EQ(choice.text, text.substr(0, first)) << "stop \"" << stop << "\" in \"" << text << "\"";
  EXPECT_EQ(choice.text.find(stop), std::string::npos);
  EXPECT_EQ(choice.finish, tern::v1::FINISH_REASON_STOP);
  EXPECT_EQ(choice.finish_chunks, 1);
  EXPECT_EQ(choice.stop_reason, stop);
  EXPECT_LT(choice.token_ids.size(), 32u);
  EXPECT_EQ(stopped.usage.completion_tokens(), static_cast<int>(choice.token_ids.size()));

  // A stop string that never appears changes nothing.
  tern::v1::GenerateRequest absent = request;
  absent.mutable_sampling()->add_stop("never appears \u00a7\u00a7");
  const StreamResult unchanged = Stream(*stub, absent);
  ASSERT_TRUE(unchanged.status.ok());
  EXPECT_EQ(unchanged.choices.at(0).text, text);
  EXPECT_EQ(unchanged.choices.at(0).finish, tern::v1::FINISH_REASON_LENGTH);
  EXPECT_TRUE(unchanged.choices.at(0).stop_reason.empty());
}

TEST(GenerateE2eTest, LogprobsReturnedWhenAsked) {
  TempDir dir;
  DaemonProcess daemon = StartOrDie({"--model", MakeTinyModel(dir, kModel)});
  auto stub = tern::v1::Llm::NewStub(Connect(daemon));
  tern::v1::GenerateRequest request = Greedy("Hello", 8);
  const StreamResult plain = Stream(*stub, request);
  request.mutable_sampling()->set_logprobs(3);
  const StreamResult result = Stream(*stub, request);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  const ChoiceResult& choice = result.choices.at(0);
  EXPECT_EQ(choice.token_ids, plain.choices.at(0).token_ids) << "asking for logprobs changes no token";
  ASSERT_EQ(choice.logprobs.size(), choice.token_ids.size());
  for (size_t i = 0; i < choice.logprobs.size(); ++i) {
    const tern::v1::Logprobs& lp = choice.logprobs[i];
    EXPECT_EQ(lp.sampled().token_id(), choice.token_ids[i]);
    EXPECT_LE(lp.sampled().logprob(), 0.0f);
    EXPECT_TRUE(std::isfinite(lp.sampled().logprob()));
    EXPECT_FALSE(lp.sampled().token().empty()) << "the token's piece";
    ASSERT_EQ(lp.top_size(), 3);
    for (int k = 1; k < lp.top_size(); ++k) EXPECT_GE(lp.top(k - 1).logprob(), lp.top(k).logprob());
    // Greedy picks the most likely token.
    EXPECT_EQ(lp.top(0).token_id(), lp.sampled().token_id());
    EXPECT_FLOAT_EQ(lp.top(0).logprob(), lp.sampled().logprob());
  }
  // logprobs = 0: the sampled token's only.
  request.mutable_sampling()->set_logprobs(0);
  const StreamResult sampled_only = Stream(*stub, request);
  ASSERT_TRUE(sampled_only.status.ok());
  ASSERT_EQ(sampled_only.choices.at(0).logprobs.size(), 8u);
  for (const auto& lp : sampled_only.choices.at(0).logprobs) EXPECT_EQ(lp.top_size(), 0);
}

TEST(GenerateE2eTest, CancelMidStreamFreesTheKvCache) {
  TempDir dir;
  DaemonProcess daemon = StartOrDie({"--model", MakeTinyModel(dir, kModel)});
  auto stub = tern::v1::Llm::NewStub(Connect(daemon));
  ASSERT_EQ(ScrapeMetric(daemon, Series("tern_kv_cache_usage_ratio")), 0.0) << "idle value";
  ASSERT_EQ(ScrapeMetric(daemon, Series("tern_num_requests_running")), 0.0);

  grpc::ClientContext context;
  SetDeadline(&context, seconds(60));
  auto reader = stub->Generate(&context, Greedy("Tell me a very long story", kContext - 16));
  tern::v1::GenerateResponse response;
  ASSERT_TRUE(reader->Read(&response));
  // While it streams, it holds KV blocks and counts as running.
  EXPECT_GT(ScrapeMetric(daemon, Series("tern_kv_cache_usage_ratio")).value_or(0), 0.0);
  EXPECT_EQ(ScrapeMetric(daemon, Series("tern_num_requests_running")), 1.0);

  const auto cancelled_at = std::chrono::steady_clock::now();
  context.TryCancel();
  while (reader->Read(&response)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitUntil([&] { return EngineIdle(daemon); }, seconds(1)))
      << "KV usage and running must return to 0 within a second of the cancel";
  const auto freed_after = std::chrono::steady_clock::now() - cancelled_at;
  EXPECT_LT(freed_after, seconds(1));
  EXPECT_TRUE(WaitUntil(
      [&] {
        return ScrapeMetric(daemon, R"(tern_request_finished_total{model="tiny-llama",outcome="abort",tenant="default"})") ==
               1.0;
      },
      seconds(1)));

  // The daemon keeps serving.
  const StreamResult next = Stream(*stub, Greedy("Hello", 4));
  EXPECT_TRUE(next.status.ok()) << next.status.error_message();
  EXPECT_EQ(next.tokens, 4);
  EXPECT_TRUE(EngineIdle(daemon));
  EXPECT_TRUE(Serving(daemon));
}

TEST(GenerateE2eTest, DeadlineExceededOnALongGeneration) {
  TempDir dir;
  DaemonProcess daemon = StartOrDie({"--model", MakeTinyModel(dir, kModel)});
  auto stub = tern::v1::Llm::NewStub(Connect(daemon));
  const auto start = std::chrono::steady_clock::now();
  const StreamResult result = Stream(*stub, Greedy("Tell me a very long story", kContext - 16),
                                     {.api_key = "", .timeout = milliseconds(300)});
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << result.status.error_message();
  EXPECT_LT(result.tokens, kContext - 16);
  EXPECT_LT(std::chrono::steady_clock::now() - start, seconds(3));
  // The server lets go of the request too.
  EXPECT_TRUE(WaitUntil([&] { return EngineIdle(daemon); }, seconds(1)));
  const StreamResult next = Stream(*stub, Greedy("Hello", 4));
  EXPECT_TRUE(next.status.ok()) << next.status.error_message();
  EXPECT_TRUE(DaemonAlive(daemon)) << daemon.Output();
}

TEST(GenerateE2eTest, QueueFullIsResourceExhausted) {
  TempDir dir;
  const std::string model = MakeTinyModel(dir, kModel);
  const std::string config = dir.Write("config.json", R"({
    "models": [{"name": "tiny-llama", "path": ")" + model + R"(", "maxNumSeqs": 1}],
    "limits": {"maxQueuedRequests": 2}
  })");
  DaemonProcess daemon = StartOrDie({"--config", config});
  auto stub = tern::v1::Llm::NewStub(Connect(daemon));
  const tern::v1::GenerateRequest long_request = Greedy("Tell me a very long story", kContext - 16);

  // One running (maxNumSeqs 1), then two waiting fill the queue.
  BackgroundStream running(*stub, long_request);
  ASSERT_TRUE(WaitUntil([&] { return running.chunks() > 0; }, seconds(10)));
  BackgroundStream waiting_a(*stub, long_request), waiting_b(*stub, long_request);
  ASSERT_TRUE(WaitUntil([&] { return ScrapeMetric(daemon, Series("tern_num_requests_waiting")) == 2.0; }, seconds(5)));
  EXPECT_EQ(ScrapeMetric(daemon, Series("tern_num_requests_running")), 1.0);

  // A flood from several threads at once: every one is turned away at once.
  constexpr int kFlood = 8;
  std::vector<grpc::Status> statuses(kFlood);
  std::vector<std::thread> flood;
  for (int i = 0; i < kFlood; ++i) {
    flood.emplace_back([&, i] { statuses[i] = Stream(*stub, Greedy("Hello", 4), {.api_key = "", .timeout = seconds(10)}).status; });
  }
  for (auto& thread : flood) thread.join();
  for (int i = 0; i < kFlood; ++i) {
    EXPECT_EQ(statuses[i].error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << statuses[i].error_message();
    EXPECT_NE(statuses[i].error_message().find("queue"), std::string::npos) << statuses[i].error_message();
  }
  // The server counts a call when gRPC reports it done, which can come just
  // after the client has its status: wait for the count, boundedly.
  EXPECT_TRUE(WaitUntil(
      [&] {
        return ScrapeMetric(daemon,
                            R"(tern_grpc_requests_total{code="RESOURCE_EXHAUSTED",method="/tern.v1.Llm/Generate"})") ==
               double(kFlood);
      },
      seconds(5)));

  // n above maxNumSeqs can never run: INVALID_ARGUMENT, not a queue error.
  tern::v1::GenerateRequest two = Greedy("Hello", 4);
  two.mutable_sampling()->set_n(2);
  const grpc::Status too_wide = Stream(*stub, two).status;
  EXPECT_EQ(too_wide.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << too_wide.error_message();

  running.Cancel();
  waiting_a.Cancel();
  waiting_b.Cancel();
  EXPECT_EQ(running.Join().status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(waiting_a.Join().status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(waiting_b.Join().status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitUntil([&] { return EngineIdle(daemon); }, seconds(1)));
  const StreamResult next = Stream(*stub, Greedy("Hello", 4));
  EXPECT_TRUE(next.status.ok()) << next.status.error_message();
}

TEST(GenerateE2eTest, SkeletonOfThoughtOutlineStreamsPointsAndReportsThem) {
  TempDir dir;
  const std::string model = MakeTinyModel(dir, kModel);
  DaemonProcess daemon = StartOrDie({"--model", model});
  auto stub = tern::v1::Llm::NewStub(Connect(daemon));
  tern::v1::GenerateRequest request = Greedy("How do I brew tea?", 3 * 6);
  request.set_decoding_mode(tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT);
  for (const char* point : {"Warm the pot", "Steep the leaves", "Serve it hot"}) request.mutable_sot()->add_outline(point);
  request.mutable_sot()->set_max_point_tokens(6);

  grpc::ClientContext context;
  SetDeadline(&context);
  auto reader = stub->Generate(&context, request);
  tern::v1::GenerateResponse response, last;
  std::map<int, std::string> point_text;
  std::map<int, int> point_tokens, finishes;
  while (reader->Read(&response)) {
    for (const auto& choice : response.choices()) {
      EXPECT_EQ(choice.part(), tern::v1::CHOICE_PART_POINT);
      point_text[choice.index()] += choice.text();
      point_tokens[choice.index()] += choice.token_ids_size();
      if (choice.finish_reason() != tern::v1::FINISH_REASON_UNSPECIFIED) ++finishes[choice.index()];
    }
    last = response;
  }
  const grpc::Status status = reader->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(point_text.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(point_tokens[i], 6) << "point " << i;
    EXPECT_EQ(finishes[i], 1) << "point " << i;
  }
  EXPECT_EQ(point_text[1].rfind("2. Steep the leaves ", 0), 0u) << point_text[1];
  EXPECT_EQ(last.decoding_mode(), tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT);
  ASSERT_EQ(last.sot().points_size(), 3);
  EXPECT_EQ(last.sot().points(2).number(), 3);
  EXPECT_EQ(last.sot().points(2).text(), "Serve it hot");
  EXPECT_EQ(last.sot().router_decision(), tern::v1::ROUTER_DECISION_NOT_ROUTED);
  EXPECT_EQ(last.sot().answer().rfind("1. Warm the pot ", 0), 0u) << last.sot().answer();
  EXPECT_EQ(last.usage().completion_tokens(), 18);
  EXPECT_EQ(ScrapeMetric(daemon, "tern_sot_requests_total{decision=\"sot\",model=\"tiny-llama\",tenant=\"default\"}"),
            1.0);
  EXPECT_TRUE(WaitUntil([&] { return EngineIdle(daemon); }, seconds(1)));
}

// --- Chat and `tern chat` with the Llama-3 tokenizer's chat template. ---

TEST(ChatE2eTest, CliStreamsTheReplyRenderedWithTheChatTemplate) {
  TempDir dir;
  const std::string model = MakeTinyModel(dir, "tiny-llama3", "llama3", {"--dtype", "bfloat16"});
  DaemonProcess daemon = StartOrDie({"--model", model});
  auto stub = tern::v1::Llm::NewStub(Connect(daemon));

  tern::v1::ChatRequest request;
  request.set_model("tiny-llama3");
  auto* system = request.add_messages();
  system->set_role("system");
  system->set_content("You are terse.");
  auto* user = request.add_messages();
  user->set_role("user");
  user->set_content("Hello there");
  request.mutable_sampling()->set_temperature(0.0f);
  request.mutable_sampling()->set_max_tokens(8);
  const StreamResult reply = StreamChat(*stub, request);
  ASSERT_TRUE(reply.status.ok()) << reply.status.error_message();
  EXPECT_GE(reply.tokens, 1);
  EXPECT_LE(reply.tokens, 8);
  EXPECT_EQ(reply.choices.at(0).finish_chunks, 1);

  // The prompt is the template's rendering: BOS, a header per message, the
  // assistant header last. Generating from those ids gives the same reply.
  const std::string rendered =
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nHello there<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n";
  const std::vector<int32_t> ids = Tokenize(*stub, rendered, /*add_special=*/false, "tiny-llama3");
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.front(), 128000) << "<|begin_of_text|>";
  EXPECT_EQ(reply.usage.prompt_tokens(), static_cast<int>(ids.size()));
  tern::v1::GenerateRequest by_ids;
  by_ids.set_model("tiny-llama3");
  for (int32_t id : ids) by_ids.mutable_token_ids()->add_ids(id);
  *by_ids.mutable_sampling() = request.sampling();
  const StreamResult generated = Stream(*stub, by_ids);
  ASSERT_TRUE(generated.status.ok()) << generated.status.error_message();
  EXPECT_EQ(generated.choices.at(0).token_ids, reply.choices.at(0).token_ids);

  // `tern chat` prints the same reply, streamed, then a newline.
  const std::vector<std::string> cli = {BinaryPath("tern"), "--target", daemon.grpc_target(), "chat", "-m",
                                        "tiny-llama3", "--system", "You are terse.", "--max-tokens", "8",
                                        "--temperature", "0", "Hello there"};
  const ProcessResult out = RunProcess(cli, seconds(60));
  EXPECT_EQ(out.exit_code, 0) << out.output;
  EXPECT_EQ(out.output, reply.text + "\n");

  // Without --system only the user message goes.
  tern::v1::ChatRequest user_only = request;
  user_only.mutable_messages()->DeleteSubrange(0, 1);
  const StreamResult user_reply = StreamChat(*stub, user_only);
  ASSERT_TRUE(user_reply.status.ok());
  const ProcessResult out_user = RunProcess({BinaryPath("tern"), "--target", daemon.grpc_target(), "chat", "-m",
                                             "tiny-llama3", "--max-tokens", "8", "--temperature", "0", "Hello there"},
                                            seconds(60));
  EXPECT_EQ(out_user.exit_code, 0) << out_user.output;
  EXPECT_EQ(out_user.output, user_reply.text + "\n");
  EXPECT_LT(user_reply.usage.prompt_tokens(), reply.usage.prompt_tokens());

  // Usage errors exit 2; server errors exit 1 with the status name.
  const ProcessResult no_model =
      RunProcess({BinaryPath("tern"), "--target", daemon.grpc_target(), "chat", "Hello"}, seconds(30));
  EXPECT_EQ(no_model.exit_code, 2) << no_model.output;
  EXPECT_NE(no_model.output.find("chat needs -m MODEL"), std::string::npos) << no_model.output;
  const ProcessResult system_elsewhere = RunProcess(
      {BinaryPath("tern"), "--target", daemon.grpc_target(), "generate", "-m", "tiny-llama3", "--system", "x", "Hi"},
      seconds(30));
  EXPECT_EQ(system_elsewhere.exit_code, 2) << system_elsewhere.output;
  const ProcessResult unknown =
      RunProcess({BinaryPath("tern"), "--target", daemon.grpc_target(), "chat", "-m", "nope", "Hello"}, seconds(30));
  EXPECT_EQ(unknown.exit_code, 1) << unknown.output;
  EXPECT_NE(unknown.output.find("NOT_FOUND"), std::string::npos) << unknown.output;
}

}  // namespace
}  // namespace tern::testing
