#include "scheduler/token_quota.h"

#include "gtest/gtest.h"

namespace tern::scheduler {
namespace {

TEST(TokenQuotasTest, ReservesRefillsAndRefunds) {
  Tenant tenant;
  tenant.name = "a";
  tenant.max_tokens_per_minute = 600;  // 10 tokens per second
  TokenQuotas quotas;
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  int64_t available = 0;
  EXPECT_TRUE(quotas.TryReserve(tenant, 500, t0, &available));  // a new tenant starts full
  EXPECT_EQ(available, 600);
  EXPECT_FALSE(quotas.TryReserve(tenant, 101, t0, &available));
  EXPECT_EQ(available, 100);
  EXPECT_TRUE(quotas.TryReserve(tenant, 150, t0 + absl::Seconds(5), &available));  // +50 refilled
  EXPECT_EQ(available, 150);
  quotas.Refund(tenant, 40, t0 + absl::Seconds(5));
  EXPECT_FALSE(quotas.TryReserve(tenant, 41, t0 + absl::Seconds(5), &available));
  EXPECT_TRUE(quotas.TryReserve(tenant, 40, t0 + absl::Seconds(5), &available));
  // Refill and refunds never exceed one minute's worth.
  quotas.Refund(tenant, 10'000, t0 + absl::Seconds(5));
  EXPECT_FALSE(quotas.TryReserve(tenant, 601, t0 + absl::Hours(1), &available));
  EXPECT_EQ(available, 600);
}

TEST(TokenQuotasTest, TenantsWithoutQuotaAndOtherTenantsAreUnaffected) {
  Tenant unlimited;
  unlimited.name = "u";
  Tenant limited;
  limited.name = "l";
  limited.max_tokens_per_minute = 10;
  TokenQuotas quotas;
  int64_t available = 0;
  const absl::Time now = absl::FromUnixSeconds(5);
  EXPECT_FALSE(quotas.TryReserve(limited, 11, now, &available));
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(quotas.TryReserve(unlimited, 1'000'000, now, &available));
  EXPECT_TRUE(quotas.TryReserve(limited, 10, now, &available));
}

}  // namespace
}  // namespace tern::scheduler
