// DeliveryThread: runs an engine's result callbacks (sinks, metrics hooks)
// in order on a thread of its own, so the engine thread only steps models.
// Transport work that a sink does (building protobufs, encoding PNGs,
// starting gRPC writes) never delays a step.
//
// Threads: Post from any thread; Stop (also the destructor) runs what was
// posted before it, then joins. Tasks must not call Stop.
#pragma once

#include <deque>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace tern::scheduler {

class DeliveryThread {
 public:
  DeliveryThread();
  ~DeliveryThread();
  DeliveryThread(const DeliveryThread&) = delete;
  DeliveryThread& operator=(const DeliveryThread&) = delete;

  // Runs `task` after every task posted before it. After Stop: runs it on
  // the caller's thread (nothing is lost).
  void Post(std::function<void()> task);
  // Runs the tasks already posted, then joins the thread. Idempotent.
  void Stop();

 private:
  void Loop();
  bool ReadyLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !tasks_.empty() || stopping_; }

  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  absl::Mutex join_mu_;
  std::thread thread_ ABSL_GUARDED_BY(join_mu_);
};

}  // namespace tern::scheduler
