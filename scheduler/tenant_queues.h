// TenantQueues: the waiting sequences of every tenant and the fair share of
// tokens between tenants.
//
// Fairness: weighted deficit round robin on tokens, kept as one counter per
// tenant: virtual_tokens = tokens computed for the tenant / its weight. The
// tenant furthest behind its share (smallest counter) is served next, which
// is DRR with a one-token quantum scaled by weight. Every token a step
// computes for a tenant (prefill and decode) is charged. A tenant that was
// idle (nothing waiting, nothing running) restarts at the smallest counter
// of the busy tenants, so idleness banks no credit.
//
// Inside a tenant: higher priority first, then older (ServedBefore).
//
// Thread: single-thread; owned by the Scheduler.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "scheduler/sequence.h"
#include "scheduler/tenant.h"

namespace tern::scheduler {

class TenantQueues {
 public:
  // Per-tenant counters (by tenant name).
  struct TenantState {
    const Tenant* tenant = nullptr;  // the latest seen; borrowed
    double virtual_tokens = 0;
    int64_t tokens_served = 0;
    int32_t running_sequences = 0;
    int32_t active_requests = 0;  // admitted, unfinished
    std::set<Sequence*, bool (*)(const Sequence*, const Sequence*)> waiting{&Before};

    bool idle() const { return waiting.empty() && running_sequences == 0; }
    static bool Before(const Sequence* a, const Sequence* b) { return ServedBefore(*a, *b); }
  };

  // Queues `seq` under its group's tenant.
  void Push(Sequence* seq);
  // Removes `seq` from its tenant's queue; false when it was not queued.
  bool Remove(Sequence* seq);
  // The front sequence of the tenant with the smallest virtual_tokens among
  // those whose front passes `eligible`; null when none. Not removed.
  Sequence* PickNext(const std::function<bool(const Sequence&)>& eligible);

  // Bookkeeping the scheduler reports.
  void Charge(const Tenant& tenant, int64_t tokens);
  void SequenceStarted(const Tenant& tenant) { State(tenant).running_sequences++; }
  void SequenceStopped(const Tenant& tenant);
  void RequestAdmitted(const Tenant& tenant) { State(tenant).active_requests++; }
  void RequestFinished(const Tenant& tenant);

  // True when the tenant may admit another request (max_concurrent_requests).
  bool MayAdmit(const Tenant& tenant);

  int64_t num_waiting() const { return num_waiting_; }
  // Null when the tenant was never seen.
  const TenantState* Find(const std::string& tenant_name) const;

 private:
  TenantState& State(const Tenant& tenant);
  // Lifts an idle tenant's counter to the busy tenants' minimum.
  void Wake(TenantState& state);

  std::map<std::string, TenantState> tenants_;  // ordered: deterministic ties
  int64_t num_waiting_ = 0;
};

}  // namespace tern::scheduler
