// Per-tenant token-rate quotas (Tenant::max_tokens_per_minute) as token
// buckets: a bucket holds at most one minute of tokens and refills
// continuously. Admission reserves the most a request can cost (prompt plus
// max_tokens for each choice); when it finishes, what it did not use is
// refunded. A request that would overdraw its tenant's bucket is refused
// at once, so one tenant over its quota never slows another.
//
// Thread-compatible: the engine calls it under its admission mutex.
#pragma once

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "scheduler/tenant.h"

namespace tern::scheduler {

class TokenQuotas {
 public:
  // True and reserves `tokens` when the tenant has no quota or enough in its
  // bucket; false (nothing reserved) otherwise. `available` gets what the
  // bucket held, for the error message.
  bool TryReserve(const Tenant& tenant, int64_t tokens, absl::Time now, int64_t* available);
  // Returns unused tokens to the tenant's bucket (capped at its capacity).
  void Refund(const Tenant& tenant, int64_t tokens, absl::Time now);

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time refilled = absl::InfinitePast();
  };
  Bucket& Refill(const Tenant& tenant, absl::Time now);
  absl::flat_hash_map<std::string, Bucket> buckets_;
};

}  // namespace tern::scheduler
