#include "server/auth/authenticator.h"

#include "gtest/gtest.h"
#include "server/config/server_config.h"

namespace tern::server {
namespace {

std::unique_ptr<Authenticator> Make(const std::string& json) {
  auto config = ParseServerConfigJson(json);
  EXPECT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(ValidateServerConfig(*config).ok());
  return Authenticator::FromConfig(*config);
}

TEST(AuthenticatorTest, OffMapsEveryoneToDefaultTenant) {
  auto auth = Make("{}");
  EXPECT_FALSE(auth->enabled());
  auto tenant = auth->Authenticate("");
  ASSERT_TRUE(tenant.ok());
  EXPECT_EQ((*tenant)->name, "default");
}

TEST(AuthenticatorTest, MapsBearerKeysToTenants) {
  auto auth = Make(R"({"tenants": [
      {"name": "a", "apiKeys": ["key-aaaaaaaa"], "weight": 3, "priority": 5},
      {"name": "b", "apiKeys": ["key-bbbbbbbb", "key-b2222222"]}]})");
  ASSERT_TRUE(auth->enabled());
  auto a = auth->Authenticate("Bearer key-aaaaaaaa");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)->name, "a");
  EXPECT_DOUBLE_EQ((*a)->weight, 3.0);
  EXPECT_EQ((*a)->priority, 5);
  auto b = auth->Authenticate("bearer   key-b2222222 ");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)->name, "b");
}

TEST(AuthenticatorTest, RejectsMissingMalformedAndUnknownKeys) {
  auto auth = Make(R"({"tenants": [{"name": "a", "apiKeys": ["key-aaaaaaaa"]}]})");
  for (const char* header : {"", "key-aaaaaaaa", "Basic key-aaaaaaaa", "Bearer ", "Bearer nope-0000"}) {
    auto tenant = auth->Authenticate(header);
    EXPECT_EQ(tenant.status().code(), absl::StatusCode::kUnauthenticated) << header;
    EXPECT_EQ(tenant.status().message().find("key-aaaaaaaa"), std::string::npos)
        << "the message must not echo keys";
  }
}

TEST(AuthenticatorTest, ExplicitlyDisabledAuthIgnoresKeys) {
  auto auth = Make(R"({"auth": {"enabled": false},
                       "tenants": [{"name": "a", "apiKeys": ["key-aaaaaaaa"]}]})");
  EXPECT_FALSE(auth->enabled());
  EXPECT_TRUE(auth->Authenticate("").ok());
}

TEST(AuthenticatorTest, AllowedModelsRestrictTenant) {
  auto auth = Make(R"({"tenants": [{"name": "a", "apiKeys": ["key-aaaaaaaa"],
                                    "allowedModels": ["small"]}]})");
  auto a = auth->Authenticate("Bearer key-aaaaaaaa");
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE((*a)->MayUseModel("small"));
  EXPECT_FALSE((*a)->MayUseModel("large"));
}

}  // namespace
}  // namespace tern::server
