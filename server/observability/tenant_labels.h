// TenantLabels: the value of the `tenant` label on per-request metrics.
// Prometheus keeps a series per distinct label set, so the values a label
// may take are bounded: the first `max_values` distinct tenants a metric
// names keep their own name, and every later one is folded into
// kOverflowTenantLabel. Tenants come from the config, so the cap matters
// for configs with many tenants (one per customer, say); it keeps a scrape's
// size and Prometheus' memory bounded however many there are. A tenant
// keeps the label it first got. Thread-safe.
#pragma once

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"

namespace tern::server {

// The label of every tenant beyond the cap. Tenant names in the config may
// not take it (server_config validation).
inline constexpr char kOverflowTenantLabel[] = "_other";
inline constexpr int kDefaultMaxTenantLabelValues = 64;

class TenantLabels {
 public:
  // `max_values` >= 1: distinct tenant names that get their own label.
  explicit TenantLabels(int max_values = kDefaultMaxTenantLabelValues) : max_values_(max_values) {}

  // `tenant`, or kOverflowTenantLabel once max_values other names have
  // their own label.
  std::string Of(const std::string& tenant);

  int max_values() const { return max_values_; }

 private:
  const int max_values_;
  absl::Mutex mu_;
  absl::flat_hash_set<std::string> named_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tern::server
