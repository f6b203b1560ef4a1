#include "server/observability/stall_watchdog.h"

#include <algorithm>

#include "runtime/base/check.h"
#include "spdlog/spdlog.h"

namespace tern::server {

StallWatchdog::StallWatchdog(std::vector<Watched> engines, ServerMetrics* metrics, Listener listener)
    : engines_(std::move(engines)), metrics_(metrics), listener_(std::move(listener)) {
  stalled_since_.assign(engines_.size(), absl::InfinitePast());
  for (const Watched& w : engines_) metrics_->InitEngineStalls(w.model);
}

StallWatchdog::~StallWatchdog() { Stop(); }

absl::Duration StallWatchdog::IntervalFor(absl::Duration stall_timeout) {
  return std::clamp(stall_timeout / 4, absl::Milliseconds(10), absl::Seconds(1));
}

void StallWatchdog::Start(absl::Duration interval) {
  CHECK(interval > absl::ZeroDuration());
  CHECK(!thread_.joinable());
  thread_ = std::thread([this, interval] { Run(interval); });
}

void StallWatchdog::Stop() {
  {
    absl::MutexLock lock(&thread_mu_);
    stop_ = true;
    wake_.Signal();
  }
  if (thread_.joinable()) thread_.join();
  absl::MutexLock lock(&check_mu_);
  stopped_ = true;
}

void StallWatchdog::Run(absl::Duration interval) {
  while (true) {
    CheckNow();
    absl::MutexLock lock(&thread_mu_);
    const absl::Time next = absl::Now() + interval;
    while (!stop_ && !wake_.WaitWithDeadline(&thread_mu_, next)) {
    }
    if (stop_) return;
  }
}

std::vector<std::string> StallWatchdog::CheckNow() {
  absl::MutexLock lock(&check_mu_);
  std::vector<std::string> stalled;
  if (stopped_) return stalled;
  for (size_t i = 0; i < engines_.size(); ++i) {
    const Watched& w = engines_[i];
    const scheduler::EngineStats stats = w.engine->Stats();
    const absl::Time now = absl::Now();
    absl::Time& since = stalled_since_[i];
    if (stats.stalled) {
      stalled.push_back(w.model);
      if (since == absl::InfinitePast()) {
        since = now - stats.busy_for;
        metrics_->RecordEngineStall(w.model);
        spdlog::error("model {}: engine stalled: busy for {:.1f}s without finishing a step ({} running, {} "
                      "waiting); ternd is not ready until it finishes one",
                      w.model, absl::ToDoubleSeconds(stats.busy_for), stats.running, stats.waiting);
      }
    } else if (since != absl::InfinitePast()) {
      spdlog::warn("model {}: engine no longer stalled, after {:.1f}s", w.model,
                   absl::ToDoubleSeconds(now - since));
      since = absl::InfinitePast();
    }
  }
  const bool any = !stalled.empty();
  if (any != any_stalled_) {
    any_stalled_ = any;
    if (listener_) listener_(any);
  }
  return stalled;
}

}  // namespace tern::server
