// DiffusionQueue: the diffusion requests that wait to join the running
// batch, and the fair share of forward rows between tenants.
//
// Fairness is the LLM scheduler's (tenant_queues.h) with rows for tokens:
// one counter per tenant, rows computed / weight; the tenant furthest behind
// is served next; a tenant coming back from idle starts at the busy tenants'
// minimum, so idleness banks no credit. Within a tenant: higher priority,
// then earlier arrival, then submission order. A tenant at
// max_concurrent_requests running requests is passed over.
//
// Thread: single-thread; owned by the diffusion engine thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "scheduler/request_key.h"
#include "scheduler/tenant.h"

namespace tern::scheduler {

struct QueuedDiffusion {
  std::string request_id;
  const Tenant* tenant = nullptr;  // borrowed, not null
  int32_t priority = 0;
  absl::Time arrival = absl::InfinitePast();
  uint64_t order = 0;  // submission order, unique (ties)
  int32_t rows = 0;    // forward rows per step when running
};

class DiffusionQueue {
 public:
  void Push(QueuedDiffusion request);
  // False when the request of `key` was not waiting.
  bool Remove(const RequestKey& key);
  // The next request by fairness, whether or not it fits the batch; null
  // when nothing waits or every waiting tenant is at its concurrency limit.
  // Not removed (Remove it when it starts).
  const QueuedDiffusion* PickNext() const;

  // Bookkeeping of running requests, by tenant.
  void Started(const Tenant& tenant);
  void Stopped(const Tenant& tenant);
  // A step computed `rows` rows for the tenant.
  void Charge(const Tenant& tenant, int64_t rows);

  int64_t size() const { return static_cast<int64_t>(by_id_.size()); }
  bool empty() const { return by_id_.empty(); }
  absl::flat_hash_map<std::string, int64_t> WaitingByTenant() const;

 private:
  using Key = std::tuple<int32_t, absl::Time, uint64_t>;  // (-priority, arrival, order)
  struct TenantState {
    const Tenant* tenant = nullptr;
    double virtual_rows = 0;
    int32_t running = 0;
    std::map<Key, QueuedDiffusion> waiting;
    bool idle() const { return waiting.empty() && running == 0; }
  };
  TenantState& State(const Tenant& tenant);
  static Key KeyOf(const QueuedDiffusion& r) { return {-r.priority, r.arrival, r.order}; }

  std::map<std::string, TenantState> tenants_;        // ordered: deterministic ties
  absl::flat_hash_map<RequestKey, Key> by_id_;  // waiting request (tenant, id) -> its place
};

}  // namespace tern::scheduler
