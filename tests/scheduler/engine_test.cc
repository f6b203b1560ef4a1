// The Engine end to end on the real CPU backend with a tiny tern-mkmodel
// Llama, and its request lifecycle (cancel, deadline, queue bounds) on the
// FakeModelRunner.
#include "scheduler/engine.h"

#include <atomic>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <set>
#include <map>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/runner/llm_model_runner.h"
#include "scheduler/engine_impl.h"
#include "tests/scheduler/fake_model_runner.h"

namespace tern::scheduler {
namespace {

using testing::GatedRunner;

namespace fs = std::filesystem;

// Collects everything a request's sink receives.
class CollectingSink final : public RequestSink {
 public:
  void OnDeltas(const std::vector<ChoiceDelta>& deltas) override {
    absl::MutexLock lock(&mu_);
    for (const ChoiceDelta& d : deltas) {
      auto& tokens = tokens_[d.index];
      tokens.insert(tokens.end(), d.token_ids.begin(), d.token_ids.end());
      if (d.aborted) aborted_ = true;
      text_[d.index] += d.text;
      if (d.finish_reason != runtime::FinishReason::kNone) {
        finish_[d.index] = d.finish_reason;
        stop_reason_[d.index] = d.stop_reason;
      }
    }
  }
  void OnDone(const absl::Status& status, const RequestUsage& usage) override {
    absl::MutexLock lock(&mu_);
    EXPECT_FALSE(done_.HasBeenNotified()) << "OnDone twice";
    status_ = status;
    usage_ = usage;
    done_.Notify();
  }
  bool WaitDone(absl::Duration timeout = absl::Seconds(60)) { return done_.WaitForNotificationWithTimeout(timeout); }
  std::vector<int32_t> tokens(int32_t index = 0) {
    absl::MutexLock lock(&mu_);
    return tokens_[index];
  }
  absl::Status status() {
    absl::MutexLock lock(&mu_);
    return status_;
  }
  RequestUsage usage() {
    absl::MutexLock lock(&mu_);
    return usage_;
  }
  bool aborted() {
    absl::MutexLock lock(&mu_);
    return aborted_;
  }
  runtime::FinishReason finish(int32_t index = 0) {
    absl::MutexLock lock(&mu_);
    return finish_[index];
  }
  std::string text(int32_t index = 0) {
    absl::MutexLock lock(&mu_);
    return text_[index];
  }
  runtime::StopReason stop_reason(int32_t index = 0) {
    absl::MutexLock lock(&mu_);
    return stop_reason_[index];
  }

 private:
  absl::Mutex mu_;
  absl::Notification done_;
  std::map<int32_t, std::vector<int32_t>> tokens_ ABSL_GUARDED_BY(mu_);
  std::map<int32_t, runtime::FinishReason> finish_ ABSL_GUARDED_BY(mu_);
  std::map<int32_t, std::string> text_ ABSL_GUARDED_BY(mu_);
  std::map<int32_t, runtime::StopReason> stop_reason_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  RequestUsage usage_ ABSL_GUARDED_BY(mu_);
  bool aborted_ ABSL_GUARDED_BY(mu_) = false;
};

// A copy of a plain request (one without a program), for submitting it again.
EngineRequest Clone(const EngineRequest& r) {
  EngineRequest c;
  c.request_id = r.request_id;
  c.tenant = r.tenant;
  c.priority = r.priority;
  c.prompt_token_ids = r.prompt_token_ids;
  c.sampling = r.sampling;
  c.arrival_time = r.arrival_time;
  c.deadline = r.deadline;
  return c;
}

EngineRequest Greedy(const std::string& id, std::vector<int32_t> prompt, int32_t max_tokens) {
  EngineRequest r;
  r.request_id = id;
  r.prompt_token_ids = std::move(prompt);
  r.sampling.temperature = 0;
  r.sampling.max_tokens = max_tokens;
  r.sampling.ignore_eos = true;
  return r;
}

std::vector<int32_t> PromptOf(int32_t n, int32_t seed) {
  std::vector<int32_t> v(n);
  for (int32_t i = 0; i < n; ++i) v[i] = (seed * 37 + i * 11) % 500 + 3;
  return v;
}

class EngineCpuTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string((fs::temp_directory_path() / ("tern-engine-test-" + std::to_string(getpid()))).string());
    const std::string cmd = std::string(TERN_BIN_DIR) +
                            "/tern-mkmodel --arch llama --preset tiny --vocab-size 512 --seed 7 --dtype float32 --out " +
                            *dir_ + " >/dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }

  std::unique_ptr<Engine> MakeEngine(int32_t num_blocks, EngineOptions options = {}) {
    runtime::LlmModelRunnerOptions o;
    o.model_dir = *dir_;
    o.block_size = 4;
    o.num_blocks = num_blocks;
    o.max_context_length = 256;
    auto runner = runtime::LlmModelRunner::Create(std::make_unique<runtime::CpuBackend>(), o);
    EXPECT_TRUE(runner.ok()) << runner.status();
    options.model_name = "tiny";
    auto engine = Engine::Create(options, *std::move(runner));
    EXPECT_TRUE(engine.ok()) << engine.status();
    return *std::move(engine);
  }

  static std::string* dir_;
};
std::string* EngineCpuTest::dir_ = nullptr;

TEST_F(EngineCpuTest, BatchedGreedyOutputsEqualEachRequestAlone) {
  struct Case {
    int32_t prompt_len, max_tokens, seed;
    absl::Duration delay;
  };
  // The first three arrive together and need 12 + 8 + 5 = 25 blocks of 4
  // at their longest, more than the 20 of the shared engine below.
  const std::vector<Case> cases = {{40, 6, 4, absl::ZeroDuration()}, {23, 8, 2, absl::ZeroDuration()},
                                   {5, 12, 1, absl::ZeroDuration()},  {2, 15, 3, absl::Milliseconds(3)},
                                   {11, 10, 5, absl::Milliseconds(8)}, {17, 9, 1, absl::Milliseconds(2)}};
  // Alone: one engine per request, big cache.
  std::vector<std::vector<int32_t>> alone;
  {
    auto engine = MakeEngine(256);
    for (size_t i = 0; i < cases.size(); ++i) {
      auto sink = std::make_shared<CollectingSink>();
      ASSERT_TRUE(engine->Submit(Greedy("alone" + std::to_string(i), PromptOf(cases[i].prompt_len, cases[i].seed),
                                        cases[i].max_tokens),
                                 sink)
                      .ok());
      ASSERT_TRUE(sink->WaitDone());
      ASSERT_TRUE(sink->status().ok()) << sink->status();
      ASSERT_EQ(int32_t(sink->tokens().size()), cases[i].max_tokens);
      EXPECT_EQ(sink->finish(), runtime::FinishReason::kLength);
      alone.push_back(sink->tokens());
    }
  }
  // Together: a small cache (preemptions), a small token budget (chunked
  // prefill), staggered arrivals. Cases 2 and 5 share a prompt prefix
  // (seed 1), so the prefix cache is exercised too.
  EngineOptions options;
  options.max_num_batched_tokens = 16;
  options.max_num_seqs = 4;
  auto engine = MakeEngine(20, options);
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (size_t i = 0; i < cases.size(); ++i) {
    absl::SleepFor(cases[i].delay);
    sinks.push_back(std::make_shared<CollectingSink>());
    ASSERT_TRUE(engine->Submit(Greedy("together" + std::to_string(i), PromptOf(cases[i].prompt_len, cases[i].seed),
                                      cases[i].max_tokens),
                               sinks.back())
                    .ok());
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    ASSERT_TRUE(sinks[i]->WaitDone());
    EXPECT_TRUE(sinks[i]->status().ok()) << sinks[i]->status();
    EXPECT_EQ(sinks[i]->tokens(), alone[i]) << "request " << i;
    EXPECT_EQ(sinks[i]->usage().prompt_tokens, cases[i].prompt_len);
    EXPECT_EQ(sinks[i]->usage().completion_tokens, cases[i].max_tokens);
  }
  const EngineStats stats = engine->Stats();
  EXPECT_EQ(stats.kv_blocks_used, 0);
  EXPECT_EQ(stats.kv_blocks_total, 20);
  EXPECT_EQ(stats.running, 0);
  EXPECT_GT(stats.steps, 0);
  EXPECT_GT(stats.preemptions, 0) << "the small cache should force a preemption";
  EXPECT_EQ(stats.generation_tokens, 12 + 8 + 15 + 6 + 10 + 9);
}

// An MoA plan on the real CPU backend: sequences longer than the whole KV
// cache run because the blocks no head of any layer reads again are freed
// after each step, and every greedy token equals the model's own greedy
// continuation with the same plan over a cache that keeps every block.
TEST_F(EngineCpuTest, MoaPlanFreesUnreadBlocksAndKeepsTheOutputs) {
  // The tiny preset: 2 layers of 4 query heads (2 kv heads). Heads of a GQA
  // group differ; the second bucket's band starts wider.
  const std::string plan_path = *dir_ + "/moa_plan.json";
  {
    std::ofstream plan(plan_path);
    plan << R"({"format": "tern.moa.v1", "num_layers": 2, "num_heads": 4, "reference_length": 200,
                "sinks": [[4, 0, 8, 4], [0, 4, 4, 16]],
                "buckets": [{"max_length": 96, "alphas": [[8, 12, 4, 16], [6, 10, 20, 4]],
                             "betas": [[0.0, 0.125, 0.125, 0.0], [0.1, 0.0, 0.0, 0.05]]},
                            {"alphas": [[12, 12, 6, 16], [8, 10, 20, 6]],
                             "betas": [[0.0, 0.125, 0.125, 0.0], [0.1, 0.0, 0.0, 0.05]]}]})";
  }
  const auto runner_options = [&](int32_t num_blocks) {
    runtime::LlmModelRunnerOptions o;
    o.model_dir = *dir_;
    o.block_size = 4;
    o.num_blocks = num_blocks;
    o.max_context_length = 256;
    o.model.attention.plan_path = plan_path;
    return o;
  };
  // The reference: the runner alone, every block kept, greedy one token a step.
  auto full = runtime::LlmModelRunner::Create(std::make_unique<runtime::CpuBackend>(), runner_options(64));
  ASSERT_TRUE(full.ok()) << full.status();
  ASSERT_NE((*full)->kv_retention(), nullptr);
  const auto continuation = [&](std::vector<int32_t> tokens, int32_t max_tokens) {
    runtime::SamplingParams greedy;
    greedy.temperature = 0;
    std::vector<int32_t> blocks(64);
    std::iota(blocks.begin(), blocks.end(), 0);
    std::vector<int32_t> out;
    int32_t computed = 0;
    for (int32_t i = 0; i < max_tokens; ++i) {
      runtime::SequenceSamplingState state(0, 0, tokens);
      runtime::SequenceStep step;
      step.token_ids = absl::MakeConstSpan(tokens).subspan(size_t(computed));
      step.num_computed_tokens = computed;
      step.block_table = blocks;
      step.sample = true;
      step.sampling = &greedy;
      step.sampling_state = &state;
      runtime::StepPlan plan;
      plan.sequences = {step};
      auto result = (*full)->Execute(plan);
      EXPECT_TRUE(result.ok() && result->outputs[0].token.ok());
      if (!result.ok() || !result->outputs[0].token.ok()) return out;
      computed = int32_t(tokens.size());
      out.push_back(result->outputs[0].token->token_id);
      tokens.push_back(out.back());
    }
    return out;
  };

  // 24 blocks of 4 tokens hold 96 positions; each request reaches 200 (a
  // sink block or four, a band of up to ~40 tokens and an 8-token chunk:
  // about 17 blocks), and three compete for the cache.
  auto runner = runtime::LlmModelRunner::Create(std::make_unique<runtime::CpuBackend>(), runner_options(24));
  ASSERT_TRUE(runner.ok()) << runner.status();
  EngineOptions options;
  options.model_name = "tiny-moa";
  options.max_num_batched_tokens = 8;
  auto engine = Engine::Create(options, *std::move(runner));
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (int32_t i = 0; i < 3; ++i) {
    sinks.push_back(std::make_shared<CollectingSink>());
    ASSERT_TRUE((*engine)->Submit(Greedy("moa" + std::to_string(i), PromptOf(120, i), 80), sinks.back()).ok());
  }
  for (int32_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(sinks[i]->WaitDone());
    ASSERT_TRUE(sinks[i]->status().ok()) << sinks[i]->status();
    EXPECT_EQ(sinks[i]->tokens(), continuation(PromptOf(120, i), 80)) << "request " << i;
  }
  EXPECT_EQ((*engine)->Stats().kv_blocks_used, 0);
}

TEST_F(EngineCpuTest, ChoicesOfOneRequestMatchSeparateSeededRequests) {
  auto engine = MakeEngine(128);
  EngineRequest r = Greedy("n3", PromptOf(9, 4), 7);
  r.sampling.temperature = 0.9f;
  r.sampling.seed = 1234;
  r.sampling.n = 3;
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(engine->Submit(Clone(r), sink).ok());
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_TRUE(sink->status().ok());
  for (int32_t i = 0; i < 3; ++i) EXPECT_EQ(sink->tokens(i).size(), 7u);
  // Same seed, same request again: the same three choices.
  r.request_id = "n3-again";
  auto again = std::make_shared<CollectingSink>();
  ASSERT_TRUE(engine->Submit(Clone(r), again).ok());
  ASSERT_TRUE(again->WaitDone());
  for (int32_t i = 0; i < 3; ++i) EXPECT_EQ(again->tokens(i), sink->tokens(i));
  EXPECT_GT(again->usage().cached_prompt_tokens, 0);
  EXPECT_EQ(engine->Stats().kv_blocks_used, 0);
}

TEST_F(EngineCpuTest, CancelFreesAllBlocks) {
  auto engine = MakeEngine(64);
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  for (int i = 0; i < 3; ++i) {
    sinks.push_back(std::make_shared<CollectingSink>());
    ASSERT_TRUE(engine->Submit(Greedy("c" + std::to_string(i), PromptOf(10 + i, i), 200), sinks.back()).ok());
  }
  // Wait until they are running and hold blocks.
  for (int i = 0; i < 2000 && engine->Stats().generation_tokens < 6; ++i) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_GT(engine->Stats().kv_blocks_used, 0);
  for (int i = 0; i < 3; ++i) engine->Cancel({kDefaultTenantName, "c" + std::to_string(i)});
  engine->Cancel({kDefaultTenantName, "unknown"});
  for (auto& sink : sinks) {
    ASSERT_TRUE(sink->WaitDone());
    EXPECT_TRUE(sink->status().ok());
    EXPECT_TRUE(sink->aborted());
    EXPECT_LT(sink->tokens().size(), 200u);
  }
  for (int i = 0; i < 1000 && engine->Stats().kv_blocks_used != 0; ++i) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(engine->Stats().kv_blocks_used, 0);
  EXPECT_EQ(engine->Stats().running, 0);
}

// Text: the deltas of a model with a real tokenizer concatenate to the
// decoded output, and a stop string is cut out (never shown in part).
TEST(EngineTextTest, TextDeltasAndStopStrings) {
  const std::string dir = (fs::temp_directory_path() / ("tern-engine-text-" + std::to_string(getpid()))).string();
  const std::string cmd = std::string(TERN_BIN_DIR) + "/tern-mkmodel --arch llama --preset tiny --seed 3 --tokenizer " +
                          TERN_TEST_DATA_DIR + "/tokenizers/llama2 --out " + dir + " >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  auto tokenizer = runtime::Tokenizer::FromModelDirectory(dir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  auto make_engine = [&] {
    runtime::LlmModelRunnerOptions o;
    o.model_dir = dir;
    o.block_size = 8;
    o.num_blocks = 64;
    auto runner = runtime::LlmModelRunner::Create(std::make_unique<runtime::CpuBackend>(), o);
    EXPECT_TRUE(runner.ok()) << runner.status();
    EngineOptions options;
    options.tokenizer = tokenizer->get();
    auto engine = Engine::Create(options, *std::move(runner));
    EXPECT_TRUE(engine.ok()) << engine.status();
    return *std::move(engine);
  };
  auto engine = make_engine();
  const std::vector<int32_t> prompt = (*tokenizer)->Encode("The quick brown fox jumps over", true);
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(engine->Submit(Greedy("free", prompt, 40), sink).ok());
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_TRUE(sink->status().ok()) << sink->status();
  std::vector<int32_t> all = prompt;
  const std::vector<int32_t> output = sink->tokens();
  all.insert(all.end(), output.begin(), output.end());
  auto full = (*tokenizer)->Decode(all, true);
  auto head = (*tokenizer)->Decode(prompt, true);
  ASSERT_TRUE(full.ok() && head.ok());
  ASSERT_EQ(full->substr(0, head->size()), *head);
  const std::string text = sink->text();
  EXPECT_EQ(text, full->substr(head->size()));

  // A stop string taken from the middle of that text: two ASCII letters.
  size_t at = std::string::npos;
  for (size_t i = text.size() / 3; i + 1 < text.size(); ++i) {
    if (std::isalpha(static_cast<unsigned char>(text[i])) && std::isalpha(static_cast<unsigned char>(text[i + 1]))) {
      at = i;
      break;
    }
  }
  if (at == std::string::npos) GTEST_SKIP() << "no ASCII pair in the random model's text: " << text;
  const std::string stop = text.substr(at, 2);
  EngineRequest r = Greedy("stop", prompt, 40);
  r.sampling.stop = {stop};
  auto stopped = std::make_shared<CollectingSink>();
  ASSERT_TRUE(engine->Submit(Clone(r), stopped).ok());
  ASSERT_TRUE(stopped->WaitDone());
  ASSERT_TRUE(stopped->status().ok());
  EXPECT_EQ(stopped->text(), text.substr(0, text.find(stop)));
  EXPECT_EQ(stopped->finish(), runtime::FinishReason::kStop);
  EXPECT_EQ(stopped->stop_reason(), runtime::StopReason(stop));
  EXPECT_LT(stopped->tokens().size(), output.size());
  fs::remove_all(dir);
}

// Lifecycle tests on the fake runner (fast and independent of model speed).
std::unique_ptr<Engine> MakeFakeEngine(EngineOptions options = {}, int32_t num_blocks = 64) {
  auto engine = Engine::Create(options, std::make_unique<testing::FakeModelRunner>(num_blocks, 4, 1000, 512));
  EXPECT_TRUE(engine.ok()) << engine.status();
  return *std::move(engine);
}

// The fake runner, 1 ms per step: slow enough for deadlines to pass mid-request.
class SlowRunner final : public runtime::ModelRunner {
 public:
  SlowRunner() : inner_(64, 4, 1000, 512) {}
  absl::StatusOr<runtime::StepResult> Execute(const runtime::StepPlan& plan) override {
    absl::SleepFor(absl::Milliseconds(1));
    return inner_.Execute(plan);
  }
  runtime::KvCacheLayout kv_cache_layout() const override { return inner_.kv_cache_layout(); }
  int64_t vocab_size() const override { return inner_.vocab_size(); }
  int64_t max_context_length() const override { return inner_.max_context_length(); }

 private:
  testing::FakeModelRunner inner_;
};

TEST(EngineTest, DeadlineGivesDeadlineExceeded) {
  auto created = Engine::Create(EngineOptions{}, std::make_unique<SlowRunner>());
  ASSERT_TRUE(created.ok());
  Engine* engine = created->get();
  EngineRequest r = Greedy("late", {1, 2, 3}, 200);
  r.deadline = absl::Now() + absl::Milliseconds(20);
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(engine->Submit(Clone(r), sink).ok());
  ASSERT_TRUE(sink->WaitDone());
  EXPECT_EQ(sink->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(sink->aborted());
  EXPECT_EQ(engine->Stats().kv_blocks_used, 0);
  // Already past: never runs.
  r.request_id = "past";
  r.deadline = absl::Now() - absl::Seconds(1);
  auto past = std::make_shared<CollectingSink>();
  ASSERT_TRUE(engine->Submit(Clone(r), past).ok());
  ASSERT_TRUE(past->WaitDone());
  EXPECT_EQ(past->status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(past->tokens().empty());
}

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

TEST(EngineTest, FullQueueGivesResourceExhausted) {
  auto gated = std::make_unique<GatedRunner>();
  GatedRunner* gate = gated.get();
  EngineOptions options;
  options.max_queued_requests = 2;
  options.max_num_seqs = 1;
  auto engine = Engine::Create(options, std::move(gated));
  ASSERT_TRUE(engine.ok());
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  auto submit = [&](const std::string& id) {
    sinks.push_back(std::make_shared<CollectingSink>());
    return (*engine)->Submit(Greedy(id, {1, 2, 3}, 2), sinks.back());
  };
  ASSERT_TRUE(submit("running").ok());
  gate->WaitEntered();  // "running" is in a step; the queue is empty
  ASSERT_TRUE(submit("q1").ok());
  ASSERT_TRUE(submit("q2").ok());
  const absl::Status full = submit("q3");
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  sinks.pop_back();
  EXPECT_EQ(submit("q1").code(), absl::StatusCode::kAlreadyExists);
  sinks.pop_back();
  gate->Open();
  for (auto& sink : sinks) {
    ASSERT_TRUE(sink->WaitDone());
    EXPECT_TRUE(sink->status().ok());
  }
}

// A client whose deadline passes is cancelled by gRPC too, so the cancel and
// the expiry can land in one engine iteration: the request finishes once
// (the cancel came first: OK, aborted) and the engine goes on.
TEST(EngineTest, CancelAndDeadlineInOneIterationFinishOnce) {
  auto gated = std::make_unique<GatedRunner>();
  GatedRunner* gate = gated.get();
  auto engine = Engine::Create(EngineOptions{}, std::move(gated));
  ASSERT_TRUE(engine.ok());
  EngineRequest r = Greedy("both", {1, 2, 3}, 50);
  r.deadline = absl::Now() + absl::Milliseconds(20);
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE((*engine)->Submit(Clone(r), sink).ok());
  gate->WaitEntered();  // admitted, its first step blocked
  absl::SleepFor(r.deadline - absl::Now() + absl::Milliseconds(1));  // until the deadline has passed
  (*engine)->Cancel({kDefaultTenantName, "both"});
  gate->Open();
  ASSERT_TRUE(sink->WaitDone());
  EXPECT_TRUE(sink->status().ok()) << sink->status();
  EXPECT_TRUE(sink->aborted());
  auto next = std::make_shared<CollectingSink>();
  ASSERT_TRUE((*engine)->Submit(Greedy("next", {1, 2, 3}, 2), next).ok());
  ASSERT_TRUE(next->WaitDone());
  EXPECT_TRUE(next->status().ok());
  EXPECT_EQ(next->tokens().size(), 2u);
  EXPECT_EQ((*engine)->Stats().kv_blocks_used, 0);
}

TEST(EngineTest, TenantOverTokenQuotaIsRejectedAndRefundsRestoreIt) {
  EngineOptions options;
  auto engine = Engine::Create(options, std::make_unique<testing::FakeModelRunner>(64, 4));
  ASSERT_TRUE(engine.ok());
  Tenant limited;
  limited.name = "limited";
  limited.max_tokens_per_minute = 40;
  Tenant other;
  other.name = "other";
  const std::vector<int32_t> prompt = {1, 2, 3, 4};
  auto run = [&](const std::string& id, const Tenant& tenant, int32_t max_tokens, bool stop_at_first) {
    auto sink = std::make_shared<CollectingSink>();
    EngineRequest request = Greedy(id, prompt, max_tokens);
    request.tenant = &tenant;
    if (stop_at_first) request.sampling.stop_token_ids = {testing::FakeModelRunner::NextToken(prompt, 1000)};
    const absl::Status submitted = (*engine)->Submit(std::move(request), sink);
    if (submitted.ok()) {
      EXPECT_TRUE(sink->WaitDone());
    }
    return submitted;
  };
  // Reserves 4 + 30 of 40, but stops after one token: 29 come back.
  EXPECT_TRUE(run("early-stop", limited, 30, true).ok());
  // 4 + 20 fits only thanks to the refund; it uses all of it.
  EXPECT_TRUE(run("uses-all", limited, 20, false).ok());
  // About 11 are left now: 4 + 10 does not fit.
  const absl::Status over = run("over", limited, 10, false);
  EXPECT_EQ(over.code(), absl::StatusCode::kResourceExhausted) << over;
  EXPECT_NE(over.message().find("quota"), std::string::npos) << over;
  EXPECT_TRUE(run("unaffected", other, 100, false).ok()) << "another tenant is not slowed by one over quota";
}

TEST(EngineTest, PerTenantQueueLimit) {
  auto gated = std::make_unique<GatedRunner>();
  GatedRunner* gate = gated.get();
  EngineOptions options;
  options.max_queued_requests_per_tenant = 1;
  options.max_num_seqs = 1;
  auto engine = Engine::Create(options, std::move(gated));
  ASSERT_TRUE(engine.ok());
  Tenant a, b;
  a.name = "a";
  b.name = "b";
  std::vector<std::shared_ptr<CollectingSink>> sinks;
  auto submit = [&](const std::string& id, const Tenant* t) {
    EngineRequest r = Greedy(id, {1, 2}, 2);
    r.tenant = t;
    sinks.push_back(std::make_shared<CollectingSink>());
    return (*engine)->Submit(Clone(r), sinks.back());
  };
  ASSERT_TRUE(submit("a0", &a).ok());
  gate->WaitEntered();
  ASSERT_TRUE(submit("a1", &a).ok());
  EXPECT_EQ(submit("a2", &a).code(), absl::StatusCode::kResourceExhausted);
  sinks.pop_back();
  EXPECT_TRUE(submit("b1", &b).ok());
  gate->Open();
  for (auto& sink : sinks) ASSERT_TRUE(sink->WaitDone());
}

TEST(EngineTest, ValidatesRequests) {
  auto engine = MakeFakeEngine({}, 64);  // 256 KV positions, context 512
  auto sink = std::make_shared<CollectingSink>();
  EXPECT_EQ(engine->Submit(Greedy("e", {}, 2), sink).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Submit(Greedy("v", {1, 1000}, 2), sink).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Submit(Greedy("v", {1, -1}, 2), sink).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Submit(Greedy("ctx", std::vector<int32_t>(500, 1), 20), sink).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Submit(Greedy("kv", std::vector<int32_t>(200, 1), 100), sink).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine->Submit(Greedy("nosink", {1}, 2), nullptr).code(), absl::StatusCode::kInvalidArgument);
  EngineRequest many = Greedy("many", {1}, 2);
  many.sampling.n = 300;  // more than max_num_seqs (256)
  EXPECT_EQ(engine->Submit(std::move(many), sink).code(), absl::StatusCode::kInvalidArgument);
  EngineRequest bad = Greedy("temp", {1}, 2);
  bad.sampling.temperature = -1;
  EXPECT_EQ(engine->Submit(std::move(bad), sink).code(), absl::StatusCode::kInvalidArgument);
  // max_tokens unset: the rest of what fits (here the KV cache: 256 + 1 - 10).
  EngineRequest open = Greedy("open", std::vector<int32_t>(10, 1), 1);
  open.sampling.max_tokens.reset();
  ASSERT_TRUE(engine->Submit(std::move(open), sink).ok());
  ASSERT_TRUE(sink->WaitDone());
  EXPECT_TRUE(sink->status().ok());
  EXPECT_EQ(sink->tokens().size(), 247u);
  EXPECT_EQ(sink->finish(), runtime::FinishReason::kLength);
}

TEST(EngineTest, DrainFinishesInFlightThenRefuses) {
  auto engine = MakeFakeEngine();
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(engine->Submit(Greedy("d", {1, 2, 3}, 30), sink).ok());
  engine->Drain(absl::Seconds(30));
  ASSERT_TRUE(sink->WaitDone(absl::ZeroDuration()));
  EXPECT_TRUE(sink->status().ok());
  EXPECT_EQ(sink->tokens().size(), 30u);
  EXPECT_EQ(engine->Submit(Greedy("late", {1}, 1), sink).code(), absl::StatusCode::kUnavailable);
}

TEST(EngineTest, DrainTimeoutAbortsTheRest) {
  auto engine = MakeFakeEngine({}, 200);
  auto sink = std::make_shared<CollectingSink>();
  // Long enough that it cannot finish in a zero timeout.
  ASSERT_TRUE(engine->Submit(Greedy("long", {1, 2, 3}, 500), sink).ok());
  engine->Drain(absl::ZeroDuration());
  ASSERT_TRUE(sink->WaitDone(absl::ZeroDuration()));
  EXPECT_EQ(sink->status().code(), absl::StatusCode::kUnavailable);
}

// Thread ids of this process (Linux).
std::set<std::string> ThreadIds() {
  std::set<std::string> ids;
  for (const auto& entry : fs::directory_iterator("/proc/self/task")) ids.insert(entry.path().filename().string());
  return ids;
}

// CPU time of one thread in nanoseconds (schedstat's first field).
int64_t ThreadCpuNs(const std::string& tid) {
  std::ifstream in("/proc/self/task/" + tid + "/schedstat");
  int64_t ns = 0;
  in >> ns;
  return ns;
}

TEST(EngineTest, IdleEngineSleeps) {
  const std::set<std::string> before_engine = ThreadIds();
  auto engine = MakeFakeEngine();
  std::vector<std::string> engine_threads;
  for (const std::string& tid : ThreadIds()) {
    if (!before_engine.contains(tid)) engine_threads.push_back(tid);
  }
  // The engine thread and its delivery thread.
  ASSERT_EQ(engine_threads.size(), 2u);
  auto sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE(engine->Submit(Greedy("one", {1, 2}, 3), sink).ok());
  ASSERT_TRUE(sink->WaitDone());
  // A busy thread would burn about 100 ms of CPU here.
  std::vector<int64_t> before;
  for (const std::string& tid : engine_threads) before.push_back(ThreadCpuNs(tid));
  absl::SleepFor(absl::Milliseconds(100));
  for (size_t i = 0; i < engine_threads.size(); ++i) {
    EXPECT_LT((ThreadCpuNs(engine_threads[i]) - before[i]) / 1e6, 5.0) << "thread " << engine_threads[i];
  }
}

// Sinks run on the engine's delivery thread: a sink that blocks holds back
// output, never the steps. While the first request's sink is stuck in
// OnDeltas, the engine still computes both requests to the end.
TEST(EngineTest, ABlockedSinkDoesNotStopTheSteps) {
  auto engine = MakeFakeEngine();
  class BlockingSink final : public RequestSink {
   public:
    void OnDeltas(const std::vector<ChoiceDelta>&) override { release.WaitForNotification(); }
    void OnDone(const absl::Status&, const RequestUsage&) override { done.Notify(); }
    absl::Notification release, done;
  };
  auto blocked = std::make_shared<BlockingSink>();
  auto other = std::make_shared<CollectingSink>();
  ASSERT_TRUE(engine->Submit(Greedy("blocked", {1, 2, 3}, 20), blocked).ok());
  ASSERT_TRUE(engine->Submit(Greedy("other", {4, 5, 6}, 20), other).ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (engine->Stats().generation_tokens < 40 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(2));
  EXPECT_EQ(engine->Stats().generation_tokens, 40) << "the steps waited for a sink";
  EXPECT_FALSE(blocked->done.HasBeenNotified());
  blocked->release.Notify();
  EXPECT_TRUE(blocked->done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ASSERT_TRUE(other->WaitDone());
  EXPECT_EQ(other->tokens().size(), 20u);
}


// A request whose choices could never hold their blocks at once, not even
// alone in an empty cache, is refused at Submit, naming n and the capacity.
// (Accepted, such a gang either never started, or started and preempted
// itself each time it outgrew the cache, until its deadline.)
TEST(EngineTest, RefusesChoicesThatCouldNeverFitAnEmptyCache) {
  auto engine = MakeFakeEngine({}, /*num_blocks=*/4);  // 4 blocks of 4 tokens
  auto sink = std::make_shared<CollectingSink>();
  auto choices = [](const std::string& id, int32_t n, std::optional<int32_t> max_tokens) {
    EngineRequest r = Greedy(id, {1, 2, 3}, 1);
    r.sampling.n = n;
    r.sampling.temperature = 1;
    r.sampling.seed = 5;
    r.sampling.max_tokens = max_tokens;
    return r;
  };
  // 8 choices of a 3-token prompt need a block each before they start.
  absl::Status status = engine->Submit(choices("eight", 8, 1), sink);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("n = 8 choices"), absl::string_view::npos) << status;
  EXPECT_NE(status.message().find("need up to 8 KV blocks"), absl::string_view::npos) << status;
  EXPECT_NE(status.message().find("holds 4 blocks of 4 tokens"), absl::string_view::npos) << status;
  // 2 choices start in 2 blocks, but 7 tokens each take them to 3 blocks
  // each (3 + 7 - 1 = 9 positions): 6 > 4.
  status = engine->Submit(choices("grows", 2, 7), sink);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("need up to 6 KV blocks"), absl::string_view::npos) << status;
  // Unset max_tokens cannot help 8 choices either.
  status = engine->Submit(choices("eight-open", 8, std::nullopt), sink);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("n = 8 choices"), absl::string_view::npos) << status;
  EXPECT_EQ(engine->Stats().steps, 0) << "nothing refused reached the engine thread";

  // At the capacity exactly: 2 choices of 6 tokens, 2 blocks each.
  auto exact = std::make_shared<CollectingSink>();
  ASSERT_TRUE(engine->Submit(choices("exact", 2, 6), exact).ok());
  ASSERT_TRUE(exact->WaitDone());
  EXPECT_TRUE(exact->status().ok()) << exact->status();
  for (int i = 0; i < 2; ++i) EXPECT_EQ(exact->tokens(i).size(), 6u);
  // Unset max_tokens with n = 4: each choice gets its share, one block
  // (4 positions: the prompt and 2 tokens, the last never written).
  auto open = std::make_shared<CollectingSink>();
  ASSERT_TRUE(engine->Submit(choices("open", 4, std::nullopt), open).ok());
  ASSERT_TRUE(open->WaitDone());
  EXPECT_TRUE(open->status().ok()) << open->status();
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(open->tokens(i).size(), 2u);
    EXPECT_EQ(open->finish(i), runtime::FinishReason::kLength);
  }
  EXPECT_EQ(engine->Stats().preemptions, 0);
  EXPECT_EQ(engine->Stats().kv_blocks_used, 0);
}

// Prefix-cache entries are salted by tenant: a tenant's repeated prompt hits
// its own cached blocks; another tenant's identical prompt hits none of them
// (so it can neither read them nor time them), and computes its own.
TEST(EngineTest, PrefixCacheIsNotSharedAcrossTenants) {
  auto engine = MakeFakeEngine({}, 64);
  Tenant acme, beta;
  acme.name = "acme";
  beta.name = "beta";
  const std::vector<int32_t> prompt = {5, 6, 7, 8, 9, 10, 11, 12, 13, 14};  // 2 full blocks of 4
  auto run = [&](const std::string& id, const Tenant& tenant) {
    EngineRequest r = Greedy(id, prompt, 3);
    r.tenant = &tenant;
    auto sink = std::make_shared<CollectingSink>();
    EXPECT_TRUE(engine->Submit(std::move(r), sink).ok());
    EXPECT_TRUE(sink->WaitDone());
    EXPECT_TRUE(sink->status().ok()) << sink->status();
    return sink;
  };
  const auto first = run("acme-1", acme);
  EXPECT_EQ(first->usage().cached_prompt_tokens, 0);
  const auto again = run("acme-2", acme);
  EXPECT_EQ(again->usage().cached_prompt_tokens, 8);
  const int64_t hits_before = engine->Stats().prefix_cache_hits;
  const auto other = run("beta-1", beta);
  EXPECT_EQ(other->usage().cached_prompt_tokens, 0);
  EXPECT_EQ(engine->Stats().prefix_cache_hits, hits_before);
  EXPECT_EQ(other->tokens(), first->tokens()) << "same prompt, same greedy output, computed anew";
  // Each tenant now has its own entries: beta's second run hits beta's blocks.
  EXPECT_EQ(run("beta-2", beta)->usage().cached_prompt_tokens, 8);
}

// Request ids are the client's to choose, so two tenants may both use one:
// the engine keys requests by (tenant, id). A tenant reusing another's id is
// accepted (no ALREADY_EXISTS that would reveal the other's request), and a
// cancel names its tenant, so it reaches only that tenant's request.
TEST(EngineTest, TenantsKeepTheirOwnRequestIds) {
  auto gated = std::make_unique<GatedRunner>();
  GatedRunner* gate = gated.get();
  auto engine = Engine::Create(EngineOptions{}, std::move(gated));
  ASSERT_TRUE(engine.ok());
  Tenant acme, beta;
  acme.name = "acme";
  beta.name = "beta";
  const auto request = [](const Tenant& tenant, std::vector<int32_t> prompt) {
    EngineRequest r = Greedy("same", std::move(prompt), 40);
    r.tenant = &tenant;
    return r;
  };
  auto acme_sink = std::make_shared<CollectingSink>();
  auto beta_sink = std::make_shared<CollectingSink>();
  ASSERT_TRUE((*engine)->Submit(request(acme, {1, 2, 3}), acme_sink).ok());
  gate->WaitEntered();  // acme's first step is held at the gate
  const absl::Status beta_submitted = (*engine)->Submit(request(beta, {4, 5, 6}), beta_sink);
  EXPECT_TRUE(beta_submitted.ok()) << beta_submitted;
  // The same tenant's id twice is still a conflict.
  const absl::Status acme_again = (*engine)->Submit(request(acme, {7, 8}), std::make_shared<CollectingSink>());
  EXPECT_EQ(acme_again.code(), absl::StatusCode::kAlreadyExists) << acme_again;
  // Cancels of the id under other tenants reach neither request; beta's reaches beta's.
  (*engine)->Cancel({kDefaultTenantName, "same"});
  (*engine)->Cancel({"gamma", "same"});
  (*engine)->Cancel({"beta", "same"});
  gate->Open();
  ASSERT_TRUE(beta_sink->WaitDone());
  EXPECT_TRUE(beta_sink->status().ok()) << beta_sink->status();
  EXPECT_TRUE(beta_sink->aborted());
  EXPECT_LT(beta_sink->tokens().size(), 40u);
  ASSERT_TRUE(acme_sink->WaitDone());
  EXPECT_TRUE(acme_sink->status().ok()) << acme_sink->status();
  EXPECT_FALSE(acme_sink->aborted());
  EXPECT_EQ(acme_sink->tokens().size(), 40u);
  // acme's tokens are those of its prompt alone: nothing of beta's leaked in.
  auto alone = std::make_shared<CollectingSink>();
  ASSERT_TRUE((*engine)->Submit(request(acme, {1, 2, 3}), alone).ok());
  ASSERT_TRUE(alone->WaitDone());
  EXPECT_EQ(alone->tokens(), acme_sink->tokens());
  // Once a request ended, its tenant may use the id again; beta's ended too.
  auto beta_again = std::make_shared<CollectingSink>();
  ASSERT_TRUE((*engine)->Submit(request(beta, {4, 5, 6}), beta_again).ok());
  ASSERT_TRUE(beta_again->WaitDone());
  EXPECT_EQ(beta_again->tokens().size(), 40u);
  EXPECT_EQ((*engine)->Stats().kv_blocks_used, 0);
}

TEST(EngineTest, KvBlocksAtLongestSharesThePromptButItsLastToken) {
  // One choice: positions prompt + max_tokens - 1, in blocks.
  EXPECT_EQ(KvBlocksAtLongest(3, 1, 1, 4), 1);
  EXPECT_EQ(KvBlocksAtLongest(3, 2, 1, 4), 1);
  EXPECT_EQ(KvBlocksAtLongest(3, 3, 1, 4), 2);
  // A 9-token prompt shares 2 full blocks (8 tokens); each of 3 choices
  // holds its last prompt token and output: 9 + 4 - 1 = 12 positions,
  // 3 blocks, 1 of its own.
  EXPECT_EQ(KvBlocksAtLongest(9, 4, 3, 4), 2 + 3 * 1);
  // The partial shared block is each choice's own copy.
  EXPECT_EQ(KvBlocksAtLongest(6, 1, 2, 4), 1 + 2 * 1);
  EXPECT_EQ(KvBlocksAtLongest(6, 4, 2, 4), 1 + 2 * 2);
}

}  // namespace
}  // namespace tern::scheduler
