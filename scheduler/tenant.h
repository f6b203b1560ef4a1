// A tenant: the unit of isolation and fairness. Requests carry the tenant
// that authenticated them; the scheduler shares tokens between tenants by
// weight, adds the tenant's priority to each request's, and enforces quotas.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tern::scheduler {

struct Tenant {
  std::string name;
  // Relative share of engine tokens under contention; > 0.
  double weight = 1.0;
  // Added to every request's priority; in [-100, 100].
  int priority = 0;
  // 0 means unlimited.
  int max_concurrent_requests = 0;
  int64_t max_tokens_per_minute = 0;
  // Models the tenant may use; empty means all.
  std::vector<std::string> allowed_models;

  bool MayUseModel(const std::string& model) const;
};

// The tenant of every request when authentication is off.
inline constexpr char kDefaultTenantName[] = "default";

}  // namespace tern::scheduler
