// The Engine under runner faults, on the FakeModelRunner: a hung step
// stalls it, a sticky device fault fails everything once and refuses new
// requests, a failed step fails only its requests (runner error, out of
// device memory, a row that cannot be sampled) and the engine goes on.
#include "scheduler/engine.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "scheduler/engine_impl.h"
#include "tests/scheduler/engine_test_helpers.h"
#include "tests/scheduler/fake_model_runner.h"

namespace tern::scheduler {
namespace {

using testing::GatedRunner;

// Fails the step when told to; otherwise the fake runner.
class FailingRunner final : public runtime::ModelRunner {
 public:
  FailingRunner() : inner_(64, 4, 1000, 512) {}
  absl::StatusOr<runtime::StepResult> Execute(const runtime::StepPlan& plan) override {
    if (fail_.load()) return absl::InternalError("device lost");
    absl::SleepFor(absl::Microseconds(200));
    return inner_.Execute(plan);
  }
  runtime::KvCacheLayout kv_cache_layout() const override { return inner_.kv_cache_layout(); }
  int64_t vocab_size() const override { return inner_.vocab_size(); }
  int64_t max_context_length() const override { return inner_.max_context_length(); }
  absl::Status Health() const override {
    return device_lost_.load() ? absl::InternalError("illegal memory access") : absl::OkStatus();
  }
  void set_fail(bool fail) { fail_.store(fail); }
  // The failure is a sticky device fault: Health reports it from then on.
  void set_device_lost() {
    device_lost_.store(true);
    fail_.store(true);
  }

 private:
  std::atomic<bool> fail_{false};
  std::atomic<bool> device_lost_{false};
  testing::FakeModelRunner inner_;
};

// A step that hangs: the engine is stalled once it has been busy without
// finishing a step for the stall timeout, and recovers when the step ends.
// An idle engine, or one whose requests cannot start, is never stalled.
TEST(EngineTest, AHungStepStallsTheEngineUntilItReturns) {
  auto gated = std::make_unique<GatedRunner>();
  GatedRunner* gate = gated.get();
  EngineOptions options;
  options.stall_timeout = absl::Milliseconds(300);
  auto engine = Engine::Create(options, std::move(gated));
  ASSERT_TRUE(engine.ok());
  absl::SleepFor(absl::Milliseconds(400));  // idle for longer than the timeout
  EXPECT_FALSE((*engine)->Stats().stalled);
  EXPECT_EQ((*engine)->Stats().busy_for, absl::ZeroDuration());
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE((*engine)->Submit(Greedy("hung", {1, 2, 3}, 2), sink).ok());
  gate->WaitEntered();
  const absl::Time entered = absl::Now();
  EngineStats stats = (*engine)->Stats();
  if (absl::Now() - entered < absl::Milliseconds(200)) {
    EXPECT_FALSE(stats.stalled) << "busy for " << stats.busy_for;
  }
  while (!(stats = (*engine)->Stats()).stalled && absl::Now() - entered < absl::Seconds(10)) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_TRUE(stats.stalled);
  EXPECT_GT(stats.busy_for, options.stall_timeout);
  EXPECT_GE(absl::Now() - entered, absl::Milliseconds(300) - absl::Milliseconds(50));
  gate->Open();
  ASSERT_TRUE(sink->WaitDone());
  EXPECT_TRUE(sink->status().ok()) << sink->status();
  EXPECT_FALSE((*engine)->Stats().stalled);
  absl::SleepFor(absl::Milliseconds(400));
  EXPECT_FALSE((*engine)->Stats().stalled) << "idle again";
  (*engine)->Drain(absl::ZeroDuration());
  absl::SleepFor(absl::Milliseconds(400));
  EXPECT_FALSE((*engine)->Stats().stalled) << "stopped";
}

TEST(EngineTest, StallTimeoutMustBePositive) {
  EngineOptions options;
  options.stall_timeout = absl::ZeroDuration();
  EXPECT_EQ(Engine::Create(options, std::make_unique<testing::FakeModelRunner>(64, 4)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(EngineTest, DeviceFaultFailsEverythingOnceAndRefusesNewRequests) {
  auto failing = std::make_unique<FailingRunner>();
  FailingRunner* runner = failing.get();
  absl::Mutex mu;
  std::vector<std::string> fatal_calls;
  EngineOptions options;
  options.model_name = "m";
  options.on_fatal = [&](const absl::Status& status) {
    absl::MutexLock lock(&mu);
    fatal_calls.push_back(std::string(status.message()));
  };
  auto engine = Engine::Create(options, std::move(failing));
  ASSERT_TRUE(engine.ok());
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (int i = 0; i < 3; ++i) {
    sinks.push_back(std::make_shared<CollectingSink>());
    ASSERT_TRUE((*engine)->Submit(Greedy("d" + std::to_string(i), {1, 2, 3}, 200), sinks.back()).ok());
  }
  for (int i = 0; i < 2000 && (*engine)->Stats().generation_tokens < 3; ++i) absl::SleepFor(absl::Milliseconds(1));
  runner->set_device_lost();
  for (auto& sink : sinks) {
    ASSERT_TRUE(sink->WaitDone());
    EXPECT_EQ(sink->status().code(), absl::StatusCode::kUnavailable) << sink->status();
    EXPECT_NE(sink->status().message().find("device lost"), std::string::npos) << sink->status();
  }
  const absl::Status refused = (*engine)->Submit(Greedy("late", {1, 2, 3}, 4), std::make_shared<CollectingSink>());
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(refused.message().find("illegal memory access"), std::string::npos) << refused;
  (*engine)->Drain(absl::ZeroDuration());
  absl::MutexLock lock(&mu);
  ASSERT_EQ(fatal_calls.size(), 1u);
  EXPECT_EQ(fatal_calls[0], "illegal memory access");
}

TEST(EngineTest, RunnerFailureFailsInFlightRequestsAndTheEngineGoesOn) {
  auto failing = std::make_unique<FailingRunner>();
  FailingRunner* runner = failing.get();
  auto engine = Engine::Create(EngineOptions{}, std::move(failing));
  ASSERT_TRUE(engine.ok());
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (int i = 0; i < 3; ++i) {
    sinks.push_back(std::make_shared<CollectingSink>());
    ASSERT_TRUE((*engine)->Submit(Greedy("f" + std::to_string(i), {1, 2, 3}, 200), sinks.back()).ok());
  }
  for (int i = 0; i < 2000 && (*engine)->Stats().generation_tokens < 3; ++i) absl::SleepFor(absl::Milliseconds(1));
  runner->set_fail(true);
  for (auto& sink : sinks) {
    ASSERT_TRUE(sink->WaitDone());
    EXPECT_EQ(sink->status().code(), absl::StatusCode::kInternal);
    EXPECT_NE(sink->status().message().find("device lost"), std::string::npos) << sink->status();
  }
  EXPECT_EQ((*engine)->Stats().kv_blocks_used, 0);
  runner->set_fail(false);
  auto after = std::make_shared<CollectingSink>();
  ASSERT_TRUE((*engine)->Submit(Greedy("after", {1, 2, 3}, 4), after).ok());
  ASSERT_TRUE(after->WaitDone());
  EXPECT_TRUE(after->status().ok());
  EXPECT_EQ(after->tokens().size(), 4u);
}

// Fails, once, the first step that computes more than `limit` tokens, as a
// device does that cannot grow its activations for a step larger than any
// before (the CUDA backend's RESOURCE_EXHAUSTED); otherwise the fake runner.
class OutOfMemoryRunner final : public runtime::ModelRunner {
 public:
  explicit OutOfMemoryRunner(int32_t limit) : inner_(256, 4, 1000, 512), limit_(limit) {}
  absl::StatusOr<runtime::StepResult> Execute(const runtime::StepPlan& plan) override {
    size_t tokens = 0;
    for (const runtime::SequenceStep& s : plan.sequences) tokens += s.token_ids.size();
    if (!fired_.load() && tokens > size_t(limit_)) {
      fired_.store(true);
      return absl::ResourceExhaustedError(absl::StrCat("out of device memory: scratch for ", tokens, " tokens"));
    }
    absl::SleepFor(absl::Microseconds(500));  // so that a long request is still running when others come
    return inner_.Execute(plan);
  }
  runtime::KvCacheLayout kv_cache_layout() const override { return inner_.kv_cache_layout(); }
  int64_t vocab_size() const override { return inner_.vocab_size(); }
  int64_t max_context_length() const override { return inner_.max_context_length(); }
  bool fired() const { return fired_.load(); }

 private:
  testing::FakeModelRunner inner_;
  const int32_t limit_;
  std::atomic<bool> fired_{false};
};

// A step the device has no memory for fails the requests in it with
// RESOURCE_EXHAUSTED; a request waiting beside them is untouched and ends as
// in a fault-free run, as do the failed ones submitted again; no block leaks.
TEST(EngineTest, AStepOutOfDeviceMemoryFailsOnlyItsRequests) {
  const std::vector<int32_t> short_prompt = {1, 2, 3};
  const std::vector<int32_t> long_prompt = PromptOf(40, 5);
  const std::vector<int32_t> waiting_prompt = PromptOf(6, 9);
  std::vector<std::vector<int32_t>> expected;
  {
    auto engine = Engine::Create(EngineOptions{}, std::make_unique<testing::FakeModelRunner>(256, 4, 1000, 512));
    ASSERT_TRUE(engine.ok());
    for (const auto& [prompt, max_tokens] : std::vector<std::pair<std::vector<int32_t>, int32_t>>{
             {short_prompt, 200}, {long_prompt, 24}, {waiting_prompt, 24}}) {
      auto sink = std::make_shared<CollectingSink>();
      ASSERT_TRUE((*engine)->Submit(Greedy("ref", prompt, max_tokens), sink).ok());
      ASSERT_TRUE(sink->WaitDone());
      ASSERT_TRUE(sink->status().ok()) << sink->status();
      expected.push_back(sink->tokens());
    }
  }
  auto oom = std::make_unique<OutOfMemoryRunner>(/*limit=*/20);
  OutOfMemoryRunner* runner = oom.get();
  EngineOptions options;
  options.max_num_seqs = 2;  // the third request waits while the faulted step runs
  auto engine = Engine::Create(options, std::move(oom));
  ASSERT_TRUE(engine.ok());
  auto running = std::make_shared<CollectingSink>();
  ASSERT_TRUE((*engine)->Submit(Greedy("running", short_prompt, 200), running).ok());
  for (int i = 0; i < 2000 && (*engine)->Stats().generation_tokens < 2; ++i) absl::SleepFor(absl::Milliseconds(1));
  auto large = std::make_shared<CollectingSink>();
  auto waiting = std::make_shared<CollectingSink>();
  ASSERT_TRUE((*engine)->Submit(Greedy("large", long_prompt, 24), large).ok());
  ASSERT_TRUE((*engine)->Submit(Greedy("waiting", waiting_prompt, 24), waiting).ok());
  for (auto* sink : {running.get(), large.get(), waiting.get()}) ASSERT_TRUE(sink->WaitDone());
  EXPECT_TRUE(runner->fired());
  for (auto* sink : {running.get(), large.get()}) {
    EXPECT_EQ(sink->status().code(), absl::StatusCode::kResourceExhausted) << sink->status();
    EXPECT_NE(sink->status().message().find("out of device memory"), std::string::npos) << sink->status();
  }
  EXPECT_TRUE(waiting->status().ok()) << waiting->status();
  EXPECT_EQ(waiting->tokens(), expected[2]);
  // What the running request streamed before the fault came once, in order.
  const std::vector<int32_t> partial = running->tokens();
  ASSERT_LT(partial.size(), expected[0].size());
  EXPECT_EQ(partial, std::vector<int32_t>(expected[0].begin(), expected[0].begin() + partial.size()));
  // Submitted again, the failed requests end as in the fault-free run.
  auto running_again = std::make_shared<CollectingSink>();
  auto large_again = std::make_shared<CollectingSink>();
  ASSERT_TRUE((*engine)->Submit(Greedy("running", short_prompt, 200), running_again).ok());
  ASSERT_TRUE((*engine)->Submit(Greedy("large", long_prompt, 24), large_again).ok());
  for (auto* sink : {running_again.get(), large_again.get()}) {
    ASSERT_TRUE(sink->WaitDone());
    EXPECT_TRUE(sink->status().ok()) << sink->status();
  }
  EXPECT_EQ(running_again->tokens(), expected[0]);
  EXPECT_EQ(large_again->tokens(), expected[1]);
  EXPECT_EQ((*engine)->Stats().kv_blocks_used, 0);
}

TEST(EngineTest, ARowThatCannotBeSampledFailsOnlyItsRequest) {
  auto runner = std::make_unique<testing::FakeModelRunner>(64, 4, 1000, 512);
  runner->set_poison_token(666);  // a sequence holding it samples a NaN row
  auto engine = Engine::Create(EngineOptions{}, std::move(runner));
  ASSERT_TRUE(engine.ok());
  auto good = std::make_shared<CollectingSink>();
  auto bad = std::make_shared<CollectingSink>();
  auto other = std::make_shared<CollectingSink>();
  ASSERT_TRUE((*engine)->Submit(Greedy("good", {1, 2, 3}, 16), good).ok());
  ASSERT_TRUE((*engine)->Submit(Greedy("bad", {4, 666, 5}, 16), bad).ok());
  ASSERT_TRUE((*engine)->Submit(Greedy("other", {7, 8}, 16), other).ok());
  for (auto* sink : {good.get(), bad.get(), other.get()}) ASSERT_TRUE(sink->WaitDone());
  EXPECT_EQ(bad->status().code(), absl::StatusCode::kInternal) << bad->status();
  EXPECT_NE(bad->status().message().find("could not be sampled"), std::string::npos) << bad->status();
  EXPECT_NE(bad->status().message().find("nan"), std::string::npos) << bad->status();
  for (auto* sink : {good.get(), other.get()}) {
    EXPECT_TRUE(sink->status().ok()) << sink->status();
    EXPECT_EQ(sink->tokens().size(), 16u);
  }
  EXPECT_EQ((*engine)->Stats().kv_blocks_used, 0);
}

}  // namespace
}  // namespace tern::scheduler
