// End-to-end: faults while other clients stream Generate from the real
// ternd (a storm of clients walking away, slow readers, a tenant over its
// token quota, SIGTERM under load).
#include <signal.h>

#include <memory>
#include <thread>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tern/v1/llm.grpc.pb.h"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/e2e_helpers.h"
#include "tests/e2e/generate_e2e_helpers.h"

namespace tern::testing {
namespace {

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

}  // namespace
}  // namespace tern::testing
