// The Engine's request lifecycle on the FakeModelRunner: deadlines, the
// queue bounds, cancel, tenants (token quotas, queue limits, prefix cache,
// request ids), validation, drain, the engine and delivery threads.
// engine_cpu_test.cc runs the Engine on the CPU backend, engine_fault_test.cc
// under runner faults; engine_test_helpers.h holds what they share.
#include "scheduler/engine.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "scheduler/engine_impl.h"
#include "tests/scheduler/engine_test_helpers.h"
#include "tests/scheduler/fake_model_runner.h"

namespace tern::scheduler {
namespace {

using testing::GatedRunner;

namespace fs = std::filesystem;

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
