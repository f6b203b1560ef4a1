#include "scheduler/tenant_queues.h"

#include <limits>

#include "runtime/base/check.h"

namespace tern::scheduler {

TenantQueues::TenantState& TenantQueues::State(const Tenant& tenant) {
  TenantState& state = tenants_[tenant.name];
  state.tenant = &tenant;
  return state;
}

const TenantQueues::TenantState* TenantQueues::Find(const std::string& tenant_name) const {
  auto it = tenants_.find(tenant_name);
  return it == tenants_.end() ? nullptr : &it->second;
}

void TenantQueues::Wake(TenantState& state) {
  double busy_min = std::numeric_limits<double>::infinity();
  for (const auto& [name, other] : tenants_) {
    if (&other != &state && !other.idle()) busy_min = std::min(busy_min, other.virtual_tokens);
  }
  if (busy_min != std::numeric_limits<double>::infinity() && state.virtual_tokens < busy_min) {
    state.virtual_tokens = busy_min;
  }
}

void TenantQueues::Push(Sequence* seq) {
  TenantState& state = State(seq->group()->tenant());
  if (state.idle()) Wake(state);
  CHECK(state.waiting.insert(seq).second) << "sequence " << seq->seq_id() << " queued twice";
  ++num_waiting_;
}

bool TenantQueues::Remove(Sequence* seq) {
  auto it = tenants_.find(seq->group()->tenant().name);
  if (it == tenants_.end() || it->second.waiting.erase(seq) == 0) return false;
  --num_waiting_;
  return true;
}

Sequence* TenantQueues::PickNext(const std::function<bool(const Sequence&)>& eligible) {
  Sequence* best = nullptr;
  double best_tokens = 0;
  for (auto& [name, state] : tenants_) {
    if (state.waiting.empty()) continue;
    Sequence* front = *state.waiting.begin();
    if (!eligible(*front)) continue;
    if (best == nullptr || state.virtual_tokens < best_tokens) {
      best = front;
      best_tokens = state.virtual_tokens;
    }
  }
  return best;
}

void TenantQueues::Charge(const Tenant& tenant, int64_t tokens) {
  TenantState& state = State(tenant);
  state.tokens_served += tokens;
  state.virtual_tokens += double(tokens) / (tenant.weight > 0 ? tenant.weight : 1.0);
}

void TenantQueues::SequenceStopped(const Tenant& tenant) {
  TenantState& state = State(tenant);
  CHECK_GT(state.running_sequences, 0);
  --state.running_sequences;
}

void TenantQueues::RequestFinished(const Tenant& tenant) {
  TenantState& state = State(tenant);
  CHECK_GT(state.active_requests, 0);
  --state.active_requests;
}

bool TenantQueues::MayAdmit(const Tenant& tenant) {
  const TenantState& state = State(tenant);
  return tenant.max_concurrent_requests <= 0 || state.active_requests < tenant.max_concurrent_requests;
}

}  // namespace tern::scheduler
