#include "scheduler/diffusion_queue.h"

#include <algorithm>
#include <limits>

#include "runtime/base/check.h"

namespace tern::scheduler {

DiffusionQueue::TenantState& DiffusionQueue::State(const Tenant& tenant) {
  TenantState& state = tenants_[tenant.name];
  state.tenant = &tenant;
  return state;
}

void DiffusionQueue::Push(QueuedDiffusion request) {
  CHECK(request.tenant != nullptr);
  TenantState& state = State(*request.tenant);
  if (state.idle()) {
    // Back from idle: start level with the busiest-served busy tenant.
    double floor = std::numeric_limits<double>::infinity();
    for (const auto& [name, other] : tenants_) {
      if (&other != &state && !other.idle()) floor = std::min(floor, other.virtual_rows);
    }
    if (floor != std::numeric_limits<double>::infinity()) state.virtual_rows = std::max(state.virtual_rows, floor);
  }
  const Key key = KeyOf(request);
  CHECK(by_id_.emplace(RequestKey{request.tenant->name, request.request_id}, key).second)
      << "request " << request.request_id << " of tenant " << request.tenant->name << " queued twice";
  state.waiting.emplace(key, std::move(request));
}

bool DiffusionQueue::Remove(const RequestKey& key) {
  auto it = by_id_.find(key);
  if (it == by_id_.end()) return false;
  tenants_.at(key.tenant).waiting.erase(it->second);
  by_id_.erase(it);
  return true;
}

const QueuedDiffusion* DiffusionQueue::PickNext() const {
  const TenantState* best = nullptr;
  for (const auto& [name, state] : tenants_) {
    if (state.waiting.empty()) continue;
    const int limit = state.tenant->max_concurrent_requests;
    if (limit > 0 && state.running >= limit) continue;
    if (best == nullptr || state.virtual_rows < best->virtual_rows) best = &state;
  }
  return best == nullptr ? nullptr : &best->waiting.begin()->second;
}

void DiffusionQueue::Started(const Tenant& tenant) { State(tenant).running++; }

void DiffusionQueue::Stopped(const Tenant& tenant) {
  TenantState& state = State(tenant);
  CHECK_GT(state.running, 0);
  state.running--;
}

void DiffusionQueue::Charge(const Tenant& tenant, int64_t rows) {
  TenantState& state = State(tenant);
  state.virtual_rows += double(rows) / std::max(tenant.weight, 1e-9);
}

absl::flat_hash_map<std::string, int64_t> DiffusionQueue::WaitingByTenant() const {
  absl::flat_hash_map<std::string, int64_t> out;
  for (const auto& [name, state] : tenants_) {
    if (!state.waiting.empty()) out[name] = static_cast<int64_t>(state.waiting.size());
  }
  return out;
}

}  // namespace tern::scheduler
