#include "scheduler/tenant.h"

#include <algorithm>

namespace tern::scheduler {

bool Tenant::MayUseModel(const std::string& model) const {
  return allowed_models.empty() ||
         std::find(allowed_models.begin(), allowed_models.end(), model) != allowed_models.end();
}

}  // namespace tern::scheduler
