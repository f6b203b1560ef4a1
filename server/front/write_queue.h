// WriteQueue: the messages of one streaming call on their way to the
// transport, handed to its consumer one write at a time and in order. The
// producer (an engine's delivery thread) never waits on the client: messages
// queue here while a write is in flight. The consumer is attached once,
// reports each finished write with OnWriteDone, and clears itself with Detach
// when it goes away; the queue never calls it after Detach.
//
// `Consumer` provides
//   void StartWrite(const Message* message);  // `message` stays valid until
//                                             // the consumer calls OnWriteDone
//   void Finish(const absl::Status& status);  // once, after the last write
// Both are called with the queue's mutex held, from whichever thread pushed,
// ended, attached or reported a write, so they must not block and must not
// call back into the queue from within.
//
// Thread-safe: every member function takes the one mutex.
#pragma once

#include <deque>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace tern::server {

template <typename Message, typename Consumer>
class WriteQueue {
 public:
  // Queues `message` behind those not yet written; starts its write at once
  // if the consumer is attached and idle. Not after End or EndDroppingPending.
  void Push(Message message) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    pending_.push_back(std::move(message));
    PumpLocked();
  }

  // The stream ends with `status`: the consumer's Finish comes once every
  // message queued before is written. Call one of the two End functions once.
  void End(const absl::Status& status) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    EndLocked(status);
  }

  // As End, but the messages not yet handed to the consumer are dropped: the
  // consumer's Finish comes once the write in flight, if any, completes.
  void EndDroppingPending(const absl::Status& status) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    pending_.clear();
    EndLocked(status);
  }

  // Consumer side. `consumer` is borrowed until Detach.
  void Attach(Consumer* consumer) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    consumer_ = consumer;
    PumpLocked();
  }

  // The write started last completed. `ok` false: the client is gone; the
  // messages still queued are dropped (its transport cancels the request).
  void OnWriteDone(bool ok) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) pending_.clear();
    PumpLocked();
  }

  void Detach() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    consumer_ = nullptr;
  }

  // The status the stream ended with; OK before it ended.
  absl::Status status() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return status_;
  }

 private:
  void EndLocked(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    status_ = status;
    done_ = true;
    PumpLocked();
  }

  // Hands the consumer the next message, or the end once nothing is left.
  void PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (consumer_ == nullptr || writing_ || finished_) return;
    if (!pending_.empty()) {
      in_flight_ = std::move(pending_.front());
      pending_.pop_front();
      writing_ = true;
      consumer_->StartWrite(&in_flight_);
      return;
    }
    if (done_) {
      finished_ = true;
      consumer_->Finish(status_);
    }
  }

  absl::Mutex mu_;
  Consumer* consumer_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::deque<Message> pending_ ABSL_GUARDED_BY(mu_);
  Message in_flight_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;      // the stream ended
  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // the consumer was told to finish
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tern::server
