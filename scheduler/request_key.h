// RequestKey: what names an in-flight request inside an engine: the tenant
// that submitted it and the id chosen for it. Request ids are the client's to
// choose, so two tenants may use the same id at the same time; every lookup
// of an in-flight request (admission's duplicate check, Cancel, deadlines,
// quota reservations, the scheduler's groups, the diffusion queue) goes by
// both parts, so a tenant can neither collide with, nor cancel, nor learn of
// another tenant's request by naming its id.
#pragma once

#include <string>
#include <utility>

namespace tern::scheduler {

struct RequestKey {
  std::string tenant;  // Tenant::name of the submitting tenant
  std::string id;      // the request id, unique among the tenant's in-flight requests

  friend bool operator==(const RequestKey&, const RequestKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const RequestKey& key) {
    return H::combine(std::move(h), key.tenant, key.id);
  }
};

}  // namespace tern::scheduler
