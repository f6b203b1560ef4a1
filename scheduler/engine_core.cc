#include "scheduler/engine_core.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/base/check.h"

namespace tern::scheduler {
namespace {

Tenant MakeDefaultTenant() {
  Tenant t;
  t.name = kDefaultTenantName;
  return t;
}

}  // namespace

EngineCoreBase::EngineCoreBase(const EngineCoreOptions& options)
    : options_(options),
      default_tenant_(MakeDefaultTenant()),
      device_seat_(options.device.turns ? options.device.turns->Join(options.model_name, options.device.share) : -1) {}

EngineCoreBase::~EngineCoreBase() {
  absl::MutexLock lock(&join_mu_);
  // The engine drains (and so joins) in its own destructor, while the
  // members its loop uses still exist.
  CHECK(!thread_.joinable()) << "engine " << options_.model_name << " destroyed without Drain";
}

void EngineCoreBase::Start(std::function<void()> loop) {
  absl::MutexLock lock(&join_mu_);
  CHECK(!thread_.joinable());
  thread_ = std::thread(std::move(loop));
}

absl::Status EngineCoreBase::AdmitLocked(const RequestKey& key, const Tenant& tenant, int64_t quota_tokens) {
  if (!fatal_.ok()) {
    return absl::UnavailableError(absl::StrCat("model ", options_.model_name, " failed: ", fatal_.message()));
  }
  if (draining_) return absl::UnavailableError("the engine is draining");
  // Only the tenant's own requests: another tenant's id is neither a
  // conflict nor something this answer may reveal.
  if (in_flight_.contains(key)) {
    return absl::AlreadyExistsError(absl::StrCat("request id ", key.id, " is already in flight"));
  }
  if (waiting_requests_ >= options_.max_queued_requests) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the queue of model ", options_.model_name, " is full (", options_.max_queued_requests, ")"));
  }
  int64_t& tenant_waiting = waiting_by_tenant_[tenant.name];
  if (options_.max_queued_requests_per_tenant > 0 && tenant_waiting >= options_.max_queued_requests_per_tenant) {
    return absl::ResourceExhaustedError(
        absl::StrCat("tenant ", tenant.name, " has ", tenant_waiting, " queued requests, its limit"));
  }
  int64_t available = 0;
  if (!quotas_.TryReserve(tenant, quota_tokens, absl::Now(), &available)) {
    return absl::ResourceExhaustedError(absl::StrCat("tenant ", tenant.name, " is over its quota of ",
                                                     tenant.max_tokens_per_minute, " tokens per minute: this request may cost ",
                                                     quota_tokens, ", ", available, " are left"));
  }
  if (tenant.max_tokens_per_minute > 0) reserved_[key] = Reservation{&tenant, quota_tokens};
  ++waiting_requests_;
  ++tenant_waiting;
  in_flight_.insert(key);
  return absl::OkStatus();
}

void EngineCoreBase::Cancel(const RequestKey& key) {
  absl::MutexLock lock(&mu_);
  cancels_.push_back(key);
  wake_.Signal();
}

void EngineCoreBase::Drain(absl::Duration timeout) {
  {
    absl::MutexLock lock(&mu_);
    if (!draining_) {
      draining_ = true;
      drain_deadline_ = absl::Now() + timeout;
    } else {
      drain_deadline_ = std::min(drain_deadline_, absl::Now() + timeout);
    }
    wake_.Signal();
  }
  absl::MutexLock lock(&join_mu_);
  if (thread_.joinable()) thread_.join();
}

absl::Duration EngineCoreBase::BusyFor() const {
  absl::MutexLock lock(&mu_);
  return asleep_ ? absl::ZeroDuration() : std::max(absl::ZeroDuration(), absl::Now() - progress_time_);
}

void EngineCoreBase::MarkAsleep() {
  asleep_ = true;
  if (options_.device.turns) options_.device.turns->Idle(device_seat_);
}

void EngineCoreBase::MarkAwake() {
  asleep_ = false;
  progress_time_ = absl::Now();
}

bool EngineCoreBase::SetFatal(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  if (!fatal_.ok()) return false;
  fatal_ = status;
  return true;
}

void EngineCoreBase::Finished(const RequestKey& key, int64_t used_tokens) {
  absl::MutexLock lock(&mu_);
  in_flight_.erase(key);
  if (auto it = reserved_.find(key); it != reserved_.end()) {
    quotas_.Refund(*it->second.tenant, it->second.tokens - used_tokens, absl::Now());
    reserved_.erase(it);
  }
}

int64_t EngineCoreBase::PublishWaiting(int64_t engine_waiting,
                                       const absl::flat_hash_map<std::string, int64_t>& by_tenant) {
  absl::MutexLock lock(&mu_);
  progress_time_ = absl::Now();
  const int64_t inbox = InboxSizeLocked();
  waiting_requests_ = engine_waiting + inbox;
  waiting_by_tenant_ = by_tenant;
  for (const auto& [tenant, n] : inbox_by_tenant_) waiting_by_tenant_[tenant] += n;
  return inbox;
}

void EngineCoreBase::Stop() {
  absl::MutexLock lock(&mu_);
  MarkAsleep();
}

EngineCoreBase::DeadlineHandle EngineCoreBase::TrackDeadline(const RequestKey& key, absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) return deadlines_.end();
  return deadlines_.emplace(deadline, key);
}

void EngineCoreBase::UntrackDeadline(DeadlineHandle handle) {
  if (handle != deadlines_.end()) deadlines_.erase(handle);
}

std::vector<RequestKey> EngineCoreBase::Expired(absl::Time now) const {
  std::vector<RequestKey> keys;
  for (auto it = deadlines_.begin(); it != deadlines_.end() && it->first <= now; ++it) keys.push_back(it->second);
  return keys;
}

}  // namespace tern::scheduler
