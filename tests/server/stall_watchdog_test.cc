// StallWatchdog over real engines on the FakeModelRunner: a stall is
// noticed, logged and counted once however many checks see it, the listener
// hears "stalled" and then "recovered" once each, and an idle engine never
// stalls.
#include "server/observability/stall_watchdog.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "tests/scheduler/fake_model_runner.h"

namespace tern::server {
namespace {

using scheduler::testing::GatedRunner;

class NullSink final : public scheduler::RequestSink {
 public:
  void OnDeltas(const std::vector<scheduler::ChoiceDelta>&) override {}
  void OnDone(const absl::Status& status, const scheduler::RequestUsage&) override {
    status_ = status;
    done_.Notify();
  }
  bool WaitDone() { return done_.WaitForNotificationWithTimeout(absl::Seconds(30)); }

 private:
  absl::Notification done_;
  absl::Status status_;
};

scheduler::EngineRequest Request(const std::string& id) {
  scheduler::EngineRequest r;
  r.request_id = id;
  r.prompt_token_ids = {1, 2, 3};
  r.sampling.temperature = 0;
  r.sampling.max_tokens = 2;
  r.sampling.ignore_eos = true;
  return r;
}

std::unique_ptr<scheduler::Engine> MakeEngine(std::unique_ptr<runtime::ModelRunner> runner,
                                              absl::Duration stall_timeout) {
  scheduler::EngineOptions options;
  options.stall_timeout = stall_timeout;
  auto engine = scheduler::Engine::Create(options, std::move(runner));
  EXPECT_TRUE(engine.ok()) << engine.status();
  return *std::move(engine);
}

class Listener {
 public:
  void operator()(bool stalled) {
    absl::MutexLock lock(&mu_);
    calls_.push_back(stalled);
  }
  std::vector<bool> calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  absl::Mutex mu_;
  std::vector<bool> calls_ ABSL_GUARDED_BY(mu_);
};

std::string Series(ServerMetrics& metrics, const std::string& series) {
  const std::string scrape = metrics.Scrape();
  const size_t pos = scrape.find("\n" + series + " ");
  if (pos == std::string::npos) return "absent";
  return scrape.substr(pos + series.size() + 2, scrape.find('\n', pos + 1) - pos - series.size() - 2);
}

TEST(StallWatchdogTest, CountsAndReportsEachStallOnce) {
  auto gated = std::make_unique<GatedRunner>();
  GatedRunner* gate = gated.get();
  auto hung = MakeEngine(std::move(gated), absl::Milliseconds(100));
  auto idle = MakeEngine(std::make_unique<scheduler::testing::FakeModelRunner>(64, 4), absl::Milliseconds(100));
  ServerMetrics metrics;
  Listener listener;
  StallWatchdog watchdog({{"hung", hung.get()}, {"idle", idle.get()}}, &metrics,
                         [&listener](bool stalled) { listener(stalled); });
  EXPECT_EQ(Series(metrics, R"(tern_engine_stalls_total{model="hung"})"), "0");
  EXPECT_EQ(Series(metrics, R"(tern_engine_stalls_total{model="idle"})"), "0");
  absl::SleepFor(absl::Milliseconds(200));  // both idle past the timeout
  EXPECT_TRUE(watchdog.CheckNow().empty());

  auto sink = std::make_shared<NullSink>();
  ASSERT_TRUE(hung->Submit(Request("r"), sink).ok());
  gate->WaitEntered();
  for (int i = 0; i < 1000 && !hung->Stats().stalled; ++i) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_TRUE(hung->Stats().stalled);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(watchdog.CheckNow(), std::vector<std::string>{"hung"});
  EXPECT_EQ(Series(metrics, R"(tern_engine_stalls_total{model="hung"})"), "1");
  EXPECT_EQ(Series(metrics, R"(tern_engine_stalls_total{model="idle"})"), "0");
  EXPECT_EQ(listener.calls(), std::vector<bool>{true});

  gate->Open();
  ASSERT_TRUE(sink->WaitDone());
  EXPECT_TRUE(watchdog.CheckNow().empty());
  EXPECT_EQ(listener.calls(), (std::vector<bool>{true, false}));
  EXPECT_EQ(Series(metrics, R"(tern_engine_stalls_total{model="hung"})"), "1");
}

TEST(StallWatchdogTest, ItsThreadNoticesAStallWithinAnInterval) {
  auto gated = std::make_unique<GatedRunner>();
  GatedRunner* gate = gated.get();
  const absl::Duration timeout = absl::Milliseconds(200);
  auto engine = MakeEngine(std::move(gated), timeout);
  ServerMetrics metrics;
  absl::Notification stalled;
  StallWatchdog watchdog({{"m", engine.get()}}, &metrics, [&stalled](bool s) {
    if (s && !stalled.HasBeenNotified()) stalled.Notify();
  });
  EXPECT_EQ(StallWatchdog::IntervalFor(timeout), absl::Milliseconds(50));
  EXPECT_EQ(StallWatchdog::IntervalFor(absl::Seconds(30)), absl::Seconds(1));
  EXPECT_EQ(StallWatchdog::IntervalFor(absl::Milliseconds(1)), absl::Milliseconds(10));
  watchdog.Start(StallWatchdog::IntervalFor(timeout));
  auto sink = std::make_shared<NullSink>();
  ASSERT_TRUE(engine->Submit(Request("r"), sink).ok());
  gate->WaitEntered();
  const absl::Time entered = absl::Now();
  EXPECT_TRUE(stalled.WaitForNotificationWithTimeout(absl::Seconds(10)));
  const absl::Duration took = absl::Now() - entered;
  EXPECT_GE(took, timeout - absl::Milliseconds(20));
  EXPECT_LT(took, absl::Seconds(5));
  watchdog.Stop();
  gate->Open();
  ASSERT_TRUE(sink->WaitDone());
}

}  // namespace
}  // namespace tern::server
