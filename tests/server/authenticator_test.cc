#include "server/auth/authenticator.h"

#include <sstream>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "server/auth/key_digest.h"
#include "server/config/server_config.h"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"

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

// printf %s key-bbbbbbbb | sha256sum
constexpr char kKeyBSha256[] = "8ad01026b2b2613b559ccb088e480e0d161365030085fb5cb060748451eb4c28";

std::string Hex(const KeyDigest& digest) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (uint8_t b : digest) {
    hex.push_back(kDigits[b >> 4]);
    hex.push_back(kDigits[b & 15]);
  }
  return hex;
}

TEST(KeyDigestTest, Sha256OfKnownInputs) {
  // FIPS 180-2's examples.
  EXPECT_EQ(Hex(Sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Hex(Sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Hex(Sha256("key-bbbbbbbb")), kKeyBSha256);
}

TEST(KeyDigestTest, ParsesHexDigestsOfEitherCaseOnly) {
  const auto lower = ParseHexDigest("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const auto upper = ParseHexDigest("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD");
  ASSERT_TRUE(lower.has_value());
  ASSERT_TRUE(upper.has_value());
  EXPECT_TRUE(DigestsEqual(*lower, *upper));
  EXPECT_TRUE(DigestsEqual(*lower, Sha256("abc")));
  EXPECT_FALSE(DigestsEqual(*lower, Sha256("abd")));
  for (const char* bad : {"", "ba7816bf", "za7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad00",
                          " a7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}) {
    EXPECT_FALSE(ParseHexDigest(bad).has_value()) << bad;
  }
}

TEST(AuthenticatorTest, HashedKeysAuthenticateLikeKeysInClear) {
  auto auth = Make(std::string(R"({"tenants": [
      {"name": "a", "apiKeys": ["key-aaaaaaaa"]},
      {"name": "b", "apiKeySha256": [")") + kKeyBSha256 + R"("]},
      {"name": "c", "api_key_sha256": [")" + Hex(Sha256("key-cccccccc")) + R"("], "apiKeys": ["key-c2222222"]}]})");
  ASSERT_TRUE(auth->enabled()) << "hashed keys alone turn auth on";
  for (const auto& [header, name] : std::vector<std::pair<std::string, std::string>>{
           {"Bearer key-aaaaaaaa", "a"}, {"Bearer key-bbbbbbbb", "b"}, {"bearer key-cccccccc", "c"},
           {"Bearer key-c2222222", "c"}}) {
    auto tenant = auth->Authenticate(header);
    ASSERT_TRUE(tenant.ok()) << header << ": " << tenant.status();
    EXPECT_EQ((*tenant)->name, name) << header;
  }
  // The digest itself is not a key.
  auto digest = auth->Authenticate(std::string("Bearer ") + kKeyBSha256);
  EXPECT_EQ(digest.status().code(), absl::StatusCode::kUnauthenticated);
  for (const char* header : {"Bearer key-bbbbbbbc", "Bearer key-bbbbbbb", "Bearer key-bbbbbbbbb"}) {
    EXPECT_EQ(auth->Authenticate(header).status().code(), absl::StatusCode::kUnauthenticated) << header;
  }
}

// Nothing Authenticate does writes a key to the log, whatever the outcome.
TEST(AuthenticatorTest, LogsNoKey) {
  std::ostringstream log;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log);
  spdlog::default_logger()->sinks().push_back(sink);
  const spdlog::level::level_enum level = spdlog::default_logger()->level();
  spdlog::default_logger()->set_level(spdlog::level::trace);
  auto auth = Make(std::string(R"({"tenants": [{"name": "a", "apiKeys": ["key-aaaaaaaa"]},
                                               {"name": "b", "apiKeySha256": [")") + kKeyBSha256 + R"("]}]})");
  for (const char* header : {"Bearer key-aaaaaaaa", "Bearer key-bbbbbbbb", "Bearer wrong-key-000", "key-aaaaaaaa"}) {
    auth->Authenticate(header).IgnoreError();
  }
  spdlog::default_logger()->set_level(level);
  spdlog::default_logger()->sinks().pop_back();
  for (const char* key : {"key-aaaaaaaa", "key-bbbbbbbb", "wrong-key-000", kKeyBSha256}) {
    EXPECT_EQ(log.str().find(key), std::string::npos) << key << " in the log:\n" << log.str();
  }
}

}  // namespace
}  // namespace tern::server
