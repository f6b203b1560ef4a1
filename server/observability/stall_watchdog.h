// StallWatchdog: a thread that checks each served model's engine for a
// stall (scheduler::EngineStats::stalled: busy without finishing a step for
// longer than the stall timeout; an idle engine never stalls) every
// `interval`. It logs each stall once when it begins and once when it ends,
// counts it (tern_engine_stalls_total{model}), and calls its listener
// whenever the answer to "is any engine stalled?" changes, which is how
// gRPC health follows a stall within one interval.
//
// Threads: its own. CheckNow may also be called from any other thread.
#pragma once

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "scheduler/engine.h"
#include "server/observability/server_metrics.h"

namespace tern::server {

class StallWatchdog {
 public:
  struct Watched {
    std::string model;
    const scheduler::Engine* engine = nullptr;  // borrowed; outlives the watchdog
  };
  // Called on the checking thread with the new answer, first at the first
  // check that finds a stall.
  using Listener = std::function<void(bool any_stalled)>;

  // Does not start the thread (Start does). `metrics` is borrowed.
  StallWatchdog(std::vector<Watched> engines, ServerMetrics* metrics, Listener listener);
  ~StallWatchdog();
  StallWatchdog(const StallWatchdog&) = delete;
  StallWatchdog& operator=(const StallWatchdog&) = delete;

  // Checks every `interval` until Stop. > 0.
  void Start(absl::Duration interval);
  // Stops and joins the thread; idempotent. The listener is not called
  // after Stop returns.
  void Stop();

  // One check: logs, counts and notifies as the thread does. Returns the
  // models stalled now.
  std::vector<std::string> CheckNow();

  // How often ternd checks for a stall timeout: a quarter of it, between
  // 10 ms and 1 s, so health turns within 1.25 x the timeout (at most 1 s
  // more).
  static absl::Duration IntervalFor(absl::Duration stall_timeout);

 private:
  void Run(absl::Duration interval);

  const std::vector<Watched> engines_;
  ServerMetrics* const metrics_;
  const Listener listener_;

  absl::Mutex check_mu_;
  std::vector<absl::Time> stalled_since_ ABSL_GUARDED_BY(check_mu_);  // InfinitePast: not stalled
  bool any_stalled_ ABSL_GUARDED_BY(check_mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(check_mu_) = false;

  absl::Mutex thread_mu_;
  absl::CondVar wake_;
  bool stop_ ABSL_GUARDED_BY(thread_mu_) = false;
  std::thread thread_;  // started and joined on the owner's thread
};

}  // namespace tern::server
