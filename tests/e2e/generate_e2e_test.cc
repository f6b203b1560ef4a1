// End-to-end: Generate and Chat against the real ternd serving a tiny random
// Llama on loopback, over real gRPC. Streaming, n > 1, stop strings,
// logprobs, cancellation, deadlines, the queue bound, bad requests while
// another request streams, faults while others stream (a storm of clients
// walking away, slow readers, a tenant over quota, SIGTERM under load), and
// the `tern chat` verb.
#include <signal.h>

#include <atomic>
#include <cmath>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tern/v1/llm.grpc.pb.h"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/e2e_helpers.h"

namespace tern::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr char kModel[] = "tiny-llama";
// The tiny preset's context (max_position_embeddings) and the Llama-2 vocabulary.
constexpr int kContext = 2048;
constexpr int kVocab = 32000;

// Greedy, exactly `max_tokens` tokens (EOS ignored): deterministic output.
tern::v1::GenerateRequest Greedy(const std::string& text, int max_tokens) {
  return GreedyRequest(kModel, text, max_tokens);
}

std::string Series(const std::string& name) { return name + "{model=\"" + kModel + "\"}"; }

std::vector<int32_t> Tokenize(tern::v1::Llm::Stub& stub, const std::string& text, bool add_special = true,
                              const std::string& model = kModel) {
  grpc::ClientContext context;
  SetDeadline(&context);
  tern::v1::TokenizeRequest request;
  request.set_model(model);
  request.set_text(text);
  request.set_add_special_tokens(add_special);
  tern::v1::TokenizeResponse response;
  const grpc::Status status = stub.Tokenize(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return {response.ids().begin(), response.ids().end()};
}

std::string Detokenize(tern::v1::Llm::Stub& stub, const std::vector<int32_t>& ids) {
  grpc::ClientContext context;
  SetDeadline(&context);
  tern::v1::DetokenizeRequest request;
  request.set_model(kModel);
  for (int32_t id : ids) request.add_ids(id);
  request.set_skip_special_tokens(true);
  tern::v1::DetokenizeResponse response;
  const grpc::Status status = stub.Detokenize(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.text();
}

// Running, not a zombie: the third field of /proc/PID/stat is its state.
bool DaemonAlive(const DaemonProcess& daemon) {
  std::ifstream stat("/proc/" + std::to_string(daemon.pid()) + "/stat");
  std::string pid, comm, state;
  return static_cast<bool>(stat >> pid >> comm >> state) && state != "Z" && state != "X";
}

bool Serving(const DaemonProcess& daemon) {
  auto stub = grpc::health::v1::Health::NewStub(Connect(daemon));
  grpc::ClientContext context;
  SetDeadline(&context);
  grpc::health::v1::HealthCheckResponse response;
  return stub->Check(&context, {}, &response).ok() &&
         response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

// Running requests and KV usage back at idle (both exactly 0).
bool EngineIdle(const DaemonProcess& daemon) {
  return ScrapeMetric(daemon, Series("tern_num_requests_running")) == 0.0 &&
         ScrapeMetric(daemon, Series("tern_num_requests_waiting")) == 0.0 &&
         ScrapeMetric(daemon, Series("tern_kv_cache_usage_ratio")) == 0.0;
}

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

// A Generate stream read on its own thread, cancellable from the test. A
// slow reader waits `read_delay` after each message it reads.
class BackgroundStream {
 public:
  BackgroundStream(tern::v1::Llm::Stub& stub, const tern::v1::GenerateRequest& request,
                   const CallOptions& options = {.api_key = "", .timeout = seconds(60)},
                   milliseconds read_delay = milliseconds(0)) {
    Prepare(&context_, options);
    thread_ = std::thread([this, &stub, request, read_delay] {
      auto reader = stub.Generate(&context_, request);
      result_ = ReadStream(reader.get(), [this, read_delay](const tern::v1::GenerateResponse&) {
        ++chunks_;
        if (read_delay > milliseconds(0)) std::this_thread::sleep_for(read_delay);
      });
    });
  }
  ~BackgroundStream() {
    Cancel();
    Join();
  }
  int chunks() const { return chunks_; }
  void Cancel() { context_.TryCancel(); }
  const StreamResult& Join() {
    if (thread_.joinable()) thread_.join();
    return result_;
  }

 private:
  grpc::ClientContext context_;
  std::atomic<int> chunks_{0};
  StreamResult result_;
  std::thread thread_;
};

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

// --- Faults injected while other clients stream. For the streams not
// faulted, every token arrives once and in order: they end with exactly the
// tokens of a fault-free greedy run of the same request, alone. ---

constexpr char kSteadyKey[] = "key-steady-0001";
constexpr char kMeteredKey[] = "key-metered-001";

// A storm of clients that walk away mid-stream (or at once), slow readers,
// and a tenant over its token quota, all while steady streams run. The slow
// readers' memory is bounded by their requests: the engine never waits on a
// client, so a stream's messages queue in its GenerationStream, one per
// engine step that produced output, at most max_tokens of them (here 64),
// plus what gRPC's flow-control window (64 KiB a stream) holds.
TEST(FaultE2eTest, DisconnectStormSlowReadersAndQuotaLeaveOtherStreamsExact) {
  TempDir dir;
  const std::string model = MakeTinyModel(dir, kModel);
  const std::string config = dir.Write("config.json", R"({
    "models": [{"name": "tiny-llama", "path": ")" + model + R"("}],
    "tenants": [{"name": "steady", "apiKeys": ["key-steady-0001"]},
                {"name": "metered", "apiKeys": ["key-metered-001"], "maxTokensPerMinute": 200}]
  })");
  DaemonProcess daemon = StartOrDie({"--config", config});
  auto stub = tern::v1::Llm::NewStub(Connect(daemon));
  const CallOptions steady_key{.api_key = kSteadyKey, .timeout = seconds(120)};
  const std::vector<std::string> prompts = {"The history of tea", "Once upon a time", "In the beginning",
                                            "Rivers flow to the sea"};
  constexpr int kTokens = 64;
  std::vector<std::vector<int32_t>> reference;
  for (const std::string& prompt : prompts) {
    const StreamResult alone = Stream(*stub, Greedy(prompt, kTokens), steady_key);
    ASSERT_TRUE(alone.status.ok()) << alone.status.error_message();
    ASSERT_EQ(alone.choices.at(0).token_ids.size(), size_t(kTokens));
    reference.push_back(alone.choices.at(0).token_ids);
  }

  std::vector<std::unique_ptr<BackgroundStream>> steady, slow;
  for (const std::string& prompt : prompts) {
    steady.push_back(std::make_unique<BackgroundStream>(*stub, Greedy(prompt, kTokens), steady_key));
    slow.push_back(std::make_unique<BackgroundStream>(*stub, Greedy(prompt, kTokens), steady_key, milliseconds(25)));
  }
  // The storm: clients that start long streams and walk away, half after
  // their first chunk, half at once.
  constexpr int kStorm = 32;
  std::atomic<int> cancelled{0};
  std::vector<std::thread> storm;
  for (int i = 0; i < kStorm; ++i) {
    storm.emplace_back([&, i] {
      grpc::ClientContext context;
      Prepare(&context, steady_key);
      auto reader = stub->Generate(&context, Greedy("Tell me a long story, number " + std::to_string(i), 1500));
      tern::v1::GenerateResponse response;
      if (i % 2 == 0) reader->Read(&response);
      context.TryCancel();
      while (reader->Read(&response)) {
      }
      if (reader->Finish().error_code() == grpc::StatusCode::CANCELLED) ++cancelled;
    });
  }
  // The metered tenant: 200 tokens a minute; each request may cost its
  // prompt + 64, so of 8 sent at once the first two or three pass and the
  // rest are refused at once.
  std::atomic<int> over_quota{0}, passed{0};
  std::vector<std::thread> metered;
  for (int i = 0; i < 8; ++i) {
    metered.emplace_back([&] {
      const StreamResult r =
          Stream(*stub, Greedy("The sea", kTokens), {.api_key = kMeteredKey, .timeout = seconds(120)});
      if (r.status.ok()) {
        ++passed;
      } else {
        EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << r.status.error_message();
        EXPECT_NE(r.status.error_message().find("quota"), std::string::npos) << r.status.error_message();
        ++over_quota;
      }
    });
  }
  for (auto& thread : metered) thread.join();
  EXPECT_GE(passed, 1);
  EXPECT_GE(over_quota, 1);
  for (auto& thread : storm) thread.join();
  EXPECT_EQ(cancelled, kStorm);
  for (size_t i = 0; i < prompts.size(); ++i) {
    const StreamResult& fast = steady[i]->Join();
    ASSERT_TRUE(fast.status.ok()) << fast.status.error_message();
    EXPECT_EQ(fast.choices.at(0).token_ids, reference[i]) << "steady stream " << i << ": tokens lost or duplicated";
    const StreamResult& late = slow[i]->Join();
    ASSERT_TRUE(late.status.ok()) << late.status.error_message();
    EXPECT_EQ(late.choices.at(0).token_ids, reference[i]) << "slow reader " << i << ": tokens lost or duplicated";
  }
  EXPECT_TRUE(WaitUntil([&] { return EngineIdle(daemon); }, seconds(5)));
  EXPECT_TRUE(Serving(daemon));
  EXPECT_TRUE(DaemonAlive(daemon)) << daemon.Output();
}

// SIGTERM while streams run: they finish (every token), calls after it get
// UNAVAILABLE, and ternd exits 0 within its grace period.
TEST(FaultE2eTest, SigtermUnderLoadFinishesInFlightStreamsAndRefusesNewOnes) {
  TempDir dir;
  DaemonProcess daemon = StartOrDie({"--model", MakeTinyModel(dir, kModel), "--drain-timeout", "20"});
  auto stub = tern::v1::Llm::NewStub(Connect(daemon));
  const std::vector<std::string> prompts = {"The history of tea", "Once upon a time", "In the beginning"};
  constexpr int kTokens = 96;
  const CallOptions patient{.api_key = "", .timeout = seconds(120)};
  std::vector<std::vector<int32_t>> reference;
  for (const std::string& prompt : prompts) {
    const StreamResult alone = Stream(*stub, Greedy(prompt, kTokens), patient);
    ASSERT_TRUE(alone.status.ok()) << alone.status.error_message();
    reference.push_back(alone.choices.at(0).token_ids);
  }
  std::vector<std::unique_ptr<BackgroundStream>> streams;
  for (const std::string& prompt : prompts) {
    streams.push_back(std::make_unique<BackgroundStream>(*stub, Greedy(prompt, kTokens), patient));
  }
  ASSERT_TRUE(WaitUntil(
      [&] {
        for (const auto& s : streams) {
          if (s->chunks() == 0) return false;
        }
        return true;
      },
      seconds(20)));
  const auto signalled = std::chrono::steady_clock::now();
  ProcessResult stopped;
  std::thread stopper([&] { stopped = daemon.Stop(SIGTERM, seconds(40)); });
  // Once it drains, new calls are refused.
  ASSERT_TRUE(WaitUntil([&] { return !Serving(daemon); }, seconds(10)));
  const StreamResult refused = Stream(*stub, Greedy("Hello", 4), {.api_key = "", .timeout = seconds(5)});
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE) << refused.status.error_message();
  for (size_t i = 0; i < prompts.size(); ++i) {
    const StreamResult& r = streams[i]->Join();
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.choices.at(0).token_ids, reference[i]) << "stream " << i << ": tokens lost or duplicated";
  }
  stopper.join();
  EXPECT_EQ(stopped.exit_code, 0) << stopped.output;
  EXPECT_LT(std::chrono::steady_clock::now() - signalled, seconds(22)) << "exit within the drain timeout";
}

// Sends `payload` (a serialized request, possibly not valid protobuf) as
// the request of server-streaming `method`, bypassing the stub's
// serialization. Counts the messages that came back.
grpc::Status RawServerStreamingCall(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
                                    const std::string& payload, const CallOptions& options, int* messages) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  Prepare(&context, options);
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(&context, method, &cq);
  void* tag = nullptr;
  bool ok = false;
  const auto step = [&](void* expected) {
    EXPECT_TRUE(cq.Next(&tag, &ok));
    EXPECT_EQ(tag, expected);
    return ok;
  };
  int start = 1, write = 2, done = 3, read = 4, finish = 5;
  call->StartCall(&start);
  step(&start);
  grpc::Slice slice(payload);
  grpc::ByteBuffer request(&slice, 1);
  call->Write(request, &write);
  step(&write);
  call->WritesDone(&done);
  step(&done);
  grpc::ByteBuffer response;
  *messages = 0;
  while (true) {
    call->Read(&response, &read);
    if (!step(&read)) break;
    ++*messages;
  }
  grpc::Status status;
  call->Finish(&status, &finish);
  step(&finish);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

constexpr char kKey[] = "key-aaaaaaaa";

TEST(GenerateE2eTest, BadRequestsGetPreciseStatusWhileAnotherRequestStreams) {
  TempDir dir;
  const std::string model = MakeTinyModel(dir, kModel);
  const std::string config = dir.Write("config.json", R"({
    "models": [{"name": "tiny-llama", "path": ")" + model + R"("}],
    "tenants": [{"name": "team-a", "apiKeys": ["key-aaaaaaaa"]},
                {"name": "team-b", "apiKeys": ["key-bbbbbbbb"], "allowedModels": ["another-model"]}]
  })");
  DaemonProcess daemon = StartOrDie({"--config", config});
  auto channel = Connect(daemon);
  auto stub = tern::v1::Llm::NewStub(channel);
  const CallOptions auth{.api_key = kKey};

  // The good stream, alone first: what it must keep producing.
  const tern::v1::GenerateRequest good = Greedy("The quick brown fox", 48);
  const StreamResult alone = Stream(*stub, good, auth);
  ASSERT_TRUE(alone.status.ok()) << alone.status.error_message();

  // Good streams back to back on the same channel until told to stop.
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::vector<StreamResult> background;
  std::thread streamer([&] {
    while (!stop) {
      StreamResult result = Stream(*stub, good, auth);
      std::lock_guard<std::mutex> lock(mu);
      background.push_back(std::move(result));
    }
  });
  const auto streams_done = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return background.size();
  };
  ASSERT_TRUE(WaitUntil([&] { return streams_done() > 0; }, seconds(30)));

  const auto generate = [&](const tern::v1::GenerateRequest& request, const CallOptions& options = {.api_key = kKey}) {
    return Stream(*stub, request, options).status;
  };
  const auto chat = [&](const tern::v1::ChatRequest& request) { return StreamChat(*stub, request, auth).status; };
  const auto base = [] { return Greedy("Hello", 4); };
  const auto with = [&](const std::function<void(tern::v1::GenerateRequest&)>& change) {
    tern::v1::GenerateRequest request = base();
    change(request);
    return generate(request);
  };
  const auto chat_request = [](const std::string& role) {
    tern::v1::ChatRequest request;
    request.set_model(kModel);
    auto* message = request.add_messages();
    message->set_role(role);
    message->set_content("Hi");
    return request;
  };
  // The serialized request with "XXXX" in its text swapped for bytes that are
  // not UTF-8. proto3 strings must be UTF-8, so protobuf refuses to parse the
  // message and no tern code sees it. gRPC 1.51's callback API then ends the
  // call with UNIMPLEMENTED and an empty message (CallbackServerStreamingHandler
  // falls back to an UnimplementedWriteReactor when deserialization fails; the
  // synchronous API would say INTERNAL). Misleading, but a clean refusal.
  const auto bad_utf8 = [&](const std::string& bytes) {
    tern::v1::GenerateRequest request = base();
    request.set_text("Hello XXXX world");
    std::string payload = request.SerializeAsString();
    const size_t at = payload.find("XXXX");
    EXPECT_NE(at, std::string::npos);
    payload.replace(at, 4, bytes);
    int messages = -1;
    const grpc::Status status = RawServerStreamingCall(channel, "/tern.v1.Llm/Generate", payload, auth, &messages);
    EXPECT_EQ(messages, 0);
    return status;
  };

  struct Case {
    std::string name;
    std::function<grpc::Status()> call;
    grpc::StatusCode code;
    std::string message;  // a part of the error message
  };
  const std::string ten_mib(10 << 20, 'a');
  const std::vector<Case> cases = {
      {"empty text", [&] { return with([](auto& r) { r.set_text(""); }); }, grpc::INVALID_ARGUMENT, "text: is empty"},
      {"no prompt", [&] { return with([](auto& r) { r.clear_prompt(); }); }, grpc::INVALID_ARGUMENT, "prompt"},
      {"empty token_ids", [&] { return with([](auto& r) { r.mutable_token_ids(); }); }, grpc::INVALID_ARGUMENT,
       "token_ids: is empty"},
      {"prompt over the context",
       [&] {
         return with([](auto& r) {
           for (int i = 0; i <= kContext; ++i) r.mutable_token_ids()->add_ids(100 + i % 50);
         });
       },
       grpc::INVALID_ARGUMENT, "the context holds 2048"},
      {"max_tokens 0", [&] { return with([](auto& r) { r.mutable_sampling()->set_max_tokens(0); }); },
       grpc::INVALID_ARGUMENT, "sampling.max_tokens"},
      {"max_tokens over the context",
       [&] { return with([](auto& r) { r.mutable_sampling()->set_max_tokens(1'000'000); }); }, grpc::INVALID_ARGUMENT,
       "exceeds the context of 2048"},
      {"n huge", [&] { return with([](auto& r) { r.mutable_sampling()->set_n(1000); }); }, grpc::INVALID_ARGUMENT,
       "sampling.n"},
      {"NaN temperature",
       [&] { return with([](auto& r) { r.mutable_sampling()->set_temperature(std::nanf("")); }); },
       grpc::INVALID_ARGUMENT, "sampling.temperature: must be a finite number"},
      {"unknown model", [&] { return with([](auto& r) { r.set_model("no-such-model"); }); }, grpc::NOT_FOUND,
       "no-such-model"},
      {"bad UTF-8 in text", [&] { return bad_utf8("\xff\xfe\xc3\x28"); }, grpc::UNIMPLEMENTED, ""},
      {"10 MiB prompt over the gRPC message limit", [&] { return with([&](auto& r) { r.set_text(ten_mib); }); },
       grpc::RESOURCE_EXHAUSTED, "larger than max"},
      {"2 MiB prompt over limits.max_prompt_bytes",
       [&] { return with([&](auto& r) { r.set_text(ten_mib.substr(0, 2 << 20)); }); }, grpc::INVALID_ARGUMENT,
       "the limit is 1048576"},
      {"empty stop string", [&] { return with([](auto& r) { r.mutable_sampling()->add_stop(""); }); },
       grpc::INVALID_ARGUMENT, "sampling.stop[0]: is empty"},
      {"17 stop strings",
       [&] {
         return with([](auto& r) {
           for (int i = 0; i < 17; ++i) r.mutable_sampling()->add_stop("stop" + std::to_string(i));
         });
       },
       grpc::INVALID_ARGUMENT, "17 stop strings; the limit is 16"},
      {"stop string over 256 bytes",
       [&] { return with([](auto& r) { r.mutable_sampling()->add_stop(std::string(257, 's')); }); },
       grpc::INVALID_ARGUMENT, "sampling.stop[0]"},
      {"wrong tenant key", [&] { return generate(base(), {.api_key = "wrong-key-000"}); }, grpc::UNAUTHENTICATED, ""},
      {"no key", [&] { return generate(base(), {}); }, grpc::UNAUTHENTICATED, "authorization"},
      {"tenant may not use the model", [&] { return generate(base(), {.api_key = "key-bbbbbbbb"}); },
       grpc::PERMISSION_DENIED, "team-b"},
      {"token id out of vocabulary", [&] { return with([](auto& r) { r.mutable_token_ids()->add_ids(kVocab); }); },
       grpc::INVALID_ARGUMENT, "outside the vocabulary"},
      {"negative token id", [&] { return with([](auto& r) { r.mutable_token_ids()->add_ids(-1); }); },
       grpc::INVALID_ARGUMENT, "token_ids[0]: is negative"},
      {"top_p 0", [&] { return with([](auto& r) { r.mutable_sampling()->set_top_p(0.0f); }); },
       grpc::INVALID_ARGUMENT, "sampling.top_p"},
      {"logprobs 21", [&] { return with([](auto& r) { r.mutable_sampling()->set_logprobs(21); }); },
       grpc::INVALID_ARGUMENT, "sampling.logprobs"},
      {"priority 101", [&] { return with([](auto& r) { r.set_priority(101); }); }, grpc::INVALID_ARGUMENT,
       "priority"},
      {"unknown decoding_mode",
       [&] { return with([](auto& r) { r.set_decoding_mode(static_cast<tern::v1::DecodingMode>(7)); }); },
       grpc::INVALID_ARGUMENT, "decoding_mode: 7"},
      {"negative stop token id",
       [&] { return with([](auto& r) { r.mutable_sampling()->add_stop_token_ids(-2); }); }, grpc::INVALID_ARGUMENT,
       "sampling.stop_token_ids[0]"},
      {"request_id over 128 bytes", [&] { return with([](auto& r) { r.set_request_id(std::string(129, 'r')); }); },
       grpc::INVALID_ARGUMENT, "request_id"},
      {"chat: unknown role", [&] { return chat(chat_request("wizard")); }, grpc::INVALID_ARGUMENT,
       "messages[0].role"},
      {"chat: no messages",
       [&] {
         tern::v1::ChatRequest request = chat_request("user");
         request.clear_messages();
         return chat(request);
       },
       grpc::INVALID_ARGUMENT, "messages: is empty"},
      {"chat: model without a chat template", [&] { return chat(chat_request("user")); },
       grpc::FAILED_PRECONDITION, "chat template"},
      {"sot: an empty outline point",
       [&] { return with([](auto& r) { r.mutable_sot()->add_outline("a"); r.mutable_sot()->add_outline("  "); }); },
       grpc::INVALID_ARGUMENT, "sot.outline[1]: is empty"},
      {"sot: 1,000 outline points",
       [&] {
         return with([](auto& r) {
           for (int i = 0; i < 1000; ++i) r.mutable_sot()->add_outline("point");
         });
       },
       grpc::INVALID_ARGUMENT, "sot.outline: 1000 points; the limit is 64"},
      {"sot: a 1 MB outline point",
       [&] {
         return with([&](auto& r) {
           r.mutable_sot()->add_outline(ten_mib.substr(0, 1 << 20));
           r.mutable_sot()->add_outline("b");
         });
       },
       grpc::INVALID_ARGUMENT, "sot.outline[0]: is 1048576 bytes; the limit is 1024"},
      {"sot: one outline point", [&] { return with([](auto& r) { r.mutable_sot()->add_outline("only"); }); },
       grpc::INVALID_ARGUMENT, "has 1 point"},
      {"sot: a point with a line break",
       [&] { return with([](auto& r) { r.mutable_sot()->add_outline("a\nb"); r.mutable_sot()->add_outline("c"); }); },
       grpc::INVALID_ARGUMENT, "sot.outline[0]: holds a line break"},
      {"sot: n = 2",
       [&] {
         return with([](auto& r) {
           r.set_decoding_mode(tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT);
           r.mutable_sampling()->set_n(2);
         });
       },
       grpc::INVALID_ARGUMENT, "sampling.n: 2 choices"},
      {"sot: token ids",
       [&] {
         return with([](auto& r) {
           r.set_decoding_mode(tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT);
           r.mutable_token_ids()->add_ids(5);
         });
       },
       grpc::INVALID_ARGUMENT, "needs the question as text"},
      {"sot: options with NORMAL decoding",
       [&] {
         return with([](auto& r) {
           r.set_decoding_mode(tern::v1::DECODING_MODE_NORMAL);
           r.mutable_sot()->set_ordered(true);
         });
       },
       grpc::INVALID_ARGUMENT, "decoding_mode is NORMAL"},
      {"sot: max_point_tokens 0",
       [&] {
         return with([](auto& r) {
           r.set_decoding_mode(tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT);
           r.mutable_sot()->set_max_point_tokens(0);
         });
       },
       grpc::INVALID_ARGUMENT, "sot.max_point_tokens"},
  };
  ASSERT_GE(cases.size(), 15u);

  const auto bad_begin = std::chrono::steady_clock::now();
  for (const Case& c : cases) {
    const grpc::Status status = c.call();
    EXPECT_EQ(status.error_code(), c.code) << c.name << ": " << status.error_message();
    EXPECT_NE(status.error_message().find(c.message), std::string::npos)
        << c.name << ": expected \"" << c.message << "\" in \"" << status.error_message() << "\"";
  }
  const auto bad_end = std::chrono::steady_clock::now();
  stop = true;
  streamer.join();

  // Every good stream ended OK with the text it has alone, and chunks kept
  // arriving while the bad requests were answered.
  ASSERT_FALSE(background.empty());
  int chunks_during = 0;
  for (const StreamResult& result : background) {
    EXPECT_TRUE(result.status.ok()) << result.status.error_message();
    EXPECT_EQ(result.tokens, 48);
    EXPECT_EQ(result.text, alone.text);
    for (const auto& at : result.chunk_times) chunks_during += at >= bad_begin && at <= bad_end;
  }
  EXPECT_GT(chunks_during, 0);

  EXPECT_TRUE(DaemonAlive(daemon));
  EXPECT_TRUE(Serving(daemon));
  // The raw path itself works: the same request with valid text streams.
  int messages = 0;
  tern::v1::GenerateRequest valid = base();
  const grpc::Status raw_ok =
      RawServerStreamingCall(channel, "/tern.v1.Llm/Generate", valid.SerializeAsString(), auth, &messages);
  EXPECT_TRUE(raw_ok.ok()) << raw_ok.error_message();
  EXPECT_GE(messages, 2);
  EXPECT_TRUE(WaitUntil([&] { return EngineIdle(daemon); }, seconds(1)));
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
