// EngineCore: the request lifecycle every engine shares, whatever its model
// kind steps (LLM token steps, diffusion denoising steps). It owns
//
//   - admission at Submit: draining, a failed device, duplicate in-flight
//     ids of the same tenant (requests are keyed by tenant and id:
//     request_key.h), the queue bounds (all requests and per tenant) and the tenant's
//     token-rate quota, all checked and reserved under one mutex;
//   - the inbox and the cancel list, which the engine thread takes each pass;
//   - the engine thread itself, its sleep on a condition variable (never
//     polling) and its wake-ups (Submit, Cancel, Drain, the earliest deadline);
//   - request deadlines (engine thread only);
//   - drain: stop admitting, a deadline for in-flight work, join the thread;
//   - liveness: how long the thread has been busy without finishing a pass
//     (busy_for, stalled) for readiness.
//
// What it does not own: how requests are planned and stepped, their results,
// their sinks. The engine (EngineImpl for LLMs, DiffusionEngineImpl) keeps
// those on its thread and calls back into the core: Finished when a request
// ends (frees its id, refunds its unused quota), PublishWaiting after each
// pass (what the queue bounds count).
//
// Threads: Submit, Cancel, Drain, BusyFor and Stalled from any thread; the
// rest (Take, SleepUntil, deadlines, Finished, PublishWaiting, SetFatal,
// Stop) from the engine thread only, which Start runs.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "scheduler/device_turns.h"
#include "scheduler/request_key.h"
#include "scheduler/tenant.h"
#include "scheduler/token_quota.h"

namespace tern::scheduler {

struct EngineCoreOptions {
  std::string model_name;            // for error messages
  int32_t max_queued_requests = 4096;  // not yet running; beyond: RESOURCE_EXHAUSTED. > 0
  int32_t max_queued_requests_per_tenant = 0;  // 0: no limit
  absl::Duration stall_timeout = absl::Seconds(30);  // > 0
  // The device this engine steps on, when other engines share it.
  DeviceShareOptions device;
};

// What Submit hands the engine thread. `Payload` is the engine's own request.
template <typename Payload>
struct CoreSubmission {
  std::string request_id;
  const Tenant* tenant = nullptr;  // never null (the core substitutes its default tenant)
  Payload payload;
};

// What the engine thread takes at the top of a pass.
template <typename Payload>
struct CoreIntake {
  std::vector<CoreSubmission<Payload>> submissions;
  std::vector<RequestKey> cancels;
  bool draining = false;
  absl::Time drain_deadline = absl::InfiniteFuture();
};

// The non-template part; see EngineCore below.
class EngineCoreBase {
 public:
  explicit EngineCoreBase(const EngineCoreOptions& options);
  virtual ~EngineCoreBase();

  const EngineCoreOptions& options() const { return options_; }
  // A null tenant in a request means this one (kDefaultTenantName).
  const Tenant& default_tenant() const { return default_tenant_; }

  // Starts the engine thread running `loop` (once).
  void Start(std::function<void()> loop);

  // Any thread. Aborts the request of `key` (its tenant and id) at the
  // engine thread's next pass; unknown keys are the engine's to ignore.
  void Cancel(const RequestKey& key);
  // Any thread. Stops admitting (UNAVAILABLE), gives in-flight requests
  // until now + `timeout` (a second call can only shorten it), and joins
  // the engine thread, whose loop must return once draining with no work.
  void Drain(absl::Duration timeout);
  // Any thread. How long the engine thread has been busy (not asleep) since
  // it last finished a pass or woke up; zero while asleep or stopped.
  absl::Duration BusyFor() const;
  bool Stalled() const { return BusyFor() > options_.stall_timeout; }

  // Engine thread. Holds the device for one step (DeviceTurns: waits while
  // another engine on the same device has the turn), until destroyed.
  DeviceTurn StepOnDevice() { return DeviceTurn(options_.device.turns.get(), device_seat_); }
  // Whether another engine on this device has work (its turns contend).
  bool DeviceContended() const {
    return options_.device.turns != nullptr && options_.device.turns->OthersBusy(device_seat_);
  }
  // The same turn, held in `turn` until it is reset (a step that spans a
  // launch and a collect).
  void TakeDeviceTurn(std::optional<DeviceTurn>* turn) { turn->emplace(options_.device.turns.get(), device_seat_); }

  // Engine thread only, from here on.
  //
  // Records the device failure that stopped the engine: Submit answers
  // UNAVAILABLE from then on. True the first time.
  bool SetFatal(const absl::Status& status);
  // The request ended: its id may be reused and the part of its quota
  // reservation beyond `used_tokens` is refunded.
  void Finished(const RequestKey& key, int64_t used_tokens);
  // After each pass: requests the engine holds that are not running yet, in
  // all and by tenant name (the inbox is added here). Also marks the pass
  // finished for BusyFor. Returns the inbox's size.
  int64_t PublishWaiting(int64_t engine_waiting, const absl::flat_hash_map<std::string, int64_t>& by_tenant);
  // Marks the engine thread asleep for good (a stopped engine is not stalled).
  void Stop();

  // Deadlines of in-flight requests (none tracked for InfiniteFuture).
  using DeadlineHandle = std::multimap<absl::Time, RequestKey>::iterator;
  DeadlineHandle TrackDeadline(const RequestKey& key, absl::Time deadline);
  void UntrackDeadline(DeadlineHandle handle);
  DeadlineHandle NoDeadline() { return deadlines_.end(); }
  // Requests whose deadline is at or before `now`, earliest first (still tracked).
  std::vector<RequestKey> Expired(absl::Time now) const;
  absl::Time EarliestDeadline() const {
    return deadlines_.empty() ? absl::InfiniteFuture() : deadlines_.begin()->first;
  }

 protected:
  // Admission checks and reservations for one request, under mu_.
  absl::Status AdmitLocked(const RequestKey& key, const Tenant& tenant, int64_t quota_tokens)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  virtual int64_t InboxSizeLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) = 0;
  // Asleep, the engine leaves its device turns (its unused time is not banked).
  void MarkAsleep() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MarkAwake() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  absl::CondVar wake_;
  std::vector<RequestKey> cancels_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time drain_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  // Inbox entries by tenant name (cleared when the engine takes the inbox).
  absl::flat_hash_map<std::string, int64_t> inbox_by_tenant_ ABSL_GUARDED_BY(mu_);

 private:
  const EngineCoreOptions options_;
  const Tenant default_tenant_;
  const int32_t device_seat_;  // in options_.device.turns, or -1

  absl::flat_hash_set<RequestKey> in_flight_ ABSL_GUARDED_BY(mu_);  // submitted, not finished
  int64_t waiting_requests_ ABSL_GUARDED_BY(mu_) = 0;  // not yet running (engine's + inbox)
  absl::flat_hash_map<std::string, int64_t> waiting_by_tenant_ ABSL_GUARDED_BY(mu_);
  absl::Status fatal_ ABSL_GUARDED_BY(mu_);
  bool asleep_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time progress_time_ ABSL_GUARDED_BY(mu_) = absl::Now();
  TokenQuotas quotas_ ABSL_GUARDED_BY(mu_);
  // Tokens reserved against a tenant's quota, by request.
  struct Reservation {
    const Tenant* tenant = nullptr;
    int64_t tokens = 0;
  };
  absl::flat_hash_map<RequestKey, Reservation> reserved_ ABSL_GUARDED_BY(mu_);

  absl::Mutex join_mu_;
  std::thread thread_ ABSL_GUARDED_BY(join_mu_);

  std::multimap<absl::Time, RequestKey> deadlines_;  // engine thread only
};

template <typename Payload>
class EngineCore final : public EngineCoreBase {
 public:
  using Submission = CoreSubmission<Payload>;
  using Intake = CoreIntake<Payload>;

  explicit EngineCore(const EngineCoreOptions& options) : EngineCoreBase(options) {}

  // Any thread. Admits the request into the inbox, or returns why not:
  // UNAVAILABLE (draining, or the device failed), ALREADY_EXISTS (an
  // in-flight id of the same tenant), RESOURCE_EXHAUSTED (the queue, the tenant's queue or the
  // tenant's token quota; `quota_tokens` is reserved until Finished).
  absl::Status Submit(std::string request_id, const Tenant* tenant, int64_t quota_tokens, Payload payload) {
    if (tenant == nullptr) tenant = &default_tenant();
    absl::MutexLock lock(&mu_);
    absl::Status admitted = AdmitLocked(RequestKey{tenant->name, request_id}, *tenant, quota_tokens);
    if (!admitted.ok()) return admitted;
    ++inbox_by_tenant_[tenant->name];
    inbox_.push_back(Submission{std::move(request_id), tenant, std::move(payload)});
    wake_.Signal();
    return absl::OkStatus();
  }

  // Engine thread. Sleeps while there is nothing to take and `has_work` is
  // false (the engine has nothing to step), then takes the inbox and cancels.
  Intake Take(bool has_work) {
    Intake intake;
    absl::MutexLock lock(&mu_);
    if (IdleLocked(has_work)) {
      MarkAsleep();
      while (IdleLocked(has_work)) wake_.Wait(&mu_);
      MarkAwake();
    }
    intake.submissions.swap(inbox_);
    intake.cancels.swap(cancels_);
    inbox_by_tenant_.clear();
    intake.draining = draining_;
    intake.drain_deadline = drain_deadline_;
    return intake;
  }

  // Engine thread. Nothing can start until a request arrives, is cancelled
  // or passes its deadline, or the drain state changes: sleeps until one of
  // those or `wake_at` (the earliest deadline is added here).
  void SleepUntilChange(const Intake& last, absl::Time wake_at) {
    wake_at = std::min(wake_at, EarliestDeadline());
    if (last.draining) wake_at = std::min(wake_at, last.drain_deadline);
    absl::MutexLock lock(&mu_);
    MarkAsleep();
    while (inbox_.empty() && cancels_.empty() && draining_ == last.draining &&
           drain_deadline_ == last.drain_deadline) {
      if (wake_.WaitWithDeadline(&mu_, wake_at)) break;
    }
    MarkAwake();
  }

 private:
  bool IdleLocked(bool has_work) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return inbox_.empty() && cancels_.empty() && !draining_ && !has_work;
  }
  int64_t InboxSizeLocked() const override ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return static_cast<int64_t>(inbox_.size());
  }

  std::vector<Submission> inbox_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tern::scheduler
