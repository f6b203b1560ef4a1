#include "scheduler/token_quota.h"

#include <algorithm>

namespace tern::scheduler {

TokenQuotas::Bucket& TokenQuotas::Refill(const Tenant& tenant, absl::Time now) {
  const double capacity = double(tenant.max_tokens_per_minute);
  Bucket& bucket = buckets_[tenant.name];
  if (bucket.refilled == absl::InfinitePast()) {
    bucket.tokens = capacity;  // a new tenant starts with a full minute
  } else if (now > bucket.refilled) {
    bucket.tokens = std::min(capacity, bucket.tokens + capacity * absl::ToDoubleMinutes(now - bucket.refilled));
  }
  bucket.refilled = std::max(bucket.refilled, now);
  return bucket;
}

bool TokenQuotas::TryReserve(const Tenant& tenant, int64_t tokens, absl::Time now, int64_t* available) {
  if (tenant.max_tokens_per_minute <= 0) return true;
  Bucket& bucket = Refill(tenant, now);
  *available = int64_t(bucket.tokens);
  if (double(tokens) > bucket.tokens) return false;
  bucket.tokens -= double(tokens);
  return true;
}

void TokenQuotas::Refund(const Tenant& tenant, int64_t tokens, absl::Time now) {
  if (tenant.max_tokens_per_minute <= 0 || tokens <= 0) return;
  Bucket& bucket = Refill(tenant, now);
  bucket.tokens = std::min(double(tenant.max_tokens_per_minute), bucket.tokens + double(tokens));
}

}  // namespace tern::scheduler
