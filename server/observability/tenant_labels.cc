#include "server/observability/tenant_labels.h"

namespace tern::server {

std::string TenantLabels::Of(const std::string& tenant) {
  absl::MutexLock lock(&mu_);
  if (named_.contains(tenant)) return tenant;
  if (static_cast<int>(named_.size()) >= max_values_) return kOverflowTenantLabel;
  named_.insert(tenant);
  return tenant;
}

}  // namespace tern::server
