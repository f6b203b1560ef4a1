// What the Engine tests share: a sink that collects a request's output,
// request builders, and an Engine on the FakeModelRunner.
// Test-only; everything here is used from the test thread, except
// CollectingSink, which the engine's delivery thread feeds.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "scheduler/engine.h"
#include "tests/scheduler/fake_model_runner.h"

namespace tern::scheduler {

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
inline EngineRequest Clone(const EngineRequest& r) {
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

inline EngineRequest Greedy(const std::string& id, std::vector<int32_t> prompt, int32_t max_tokens) {
  EngineRequest r;
  r.request_id = id;
  r.prompt_token_ids = std::move(prompt);
  r.sampling.temperature = 0;
  r.sampling.max_tokens = max_tokens;
  r.sampling.ignore_eos = true;
  return r;
}

inline std::vector<int32_t> PromptOf(int32_t n, int32_t seed) {
  std::vector<int32_t> v(n);
  for (int32_t i = 0; i < n; ++i) v[i] = (seed * 37 + i * 11) % 500 + 3;
  return v;
}

// Lifecycle tests on the fake runner (fast and independent of model speed).
inline std::unique_ptr<Engine> MakeFakeEngine(EngineOptions options = {}, int32_t num_blocks = 64) {
  auto engine = Engine::Create(options, std::make_unique<testing::FakeModelRunner>(num_blocks, 4, 1000, 512));
  EXPECT_TRUE(engine.ok()) << engine.status();
  return *std::move(engine);
}

}  // namespace tern::scheduler
