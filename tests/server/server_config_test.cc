#include "server/config/server_config.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace tern::server {
namespace {

TEST(ServerConfigTest, ParsesCamelAndSnakeCaseFields) {
  auto config = ParseServerConfigJson(R"({
    "listen": {"grpc_port": 7000, "httpPort": 7001},
    "models": [{"path": "/models/llama", "backend": "cpu"}],
    "tenants": [{"name": "a", "apiKeys": ["12345678"], "weight": 2}]
  })");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(EffectiveGrpcPort(*config), 7000);
  EXPECT_EQ(EffectiveHttpPort(*config), 7001);
  EXPECT_EQ(EffectiveModelName(config->models(0)), "llama");
  EXPECT_TRUE(EffectiveAuthEnabled(*config));
  EXPECT_TRUE(ValidateServerConfig(*config).ok());
}

TEST(ServerConfigTest, DefaultsWhenEmpty) {
  auto config = ParseServerConfigJson("{}");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(EffectiveGrpcPort(*config), 50051);
  EXPECT_EQ(EffectiveHttpPort(*config), 8000);
  EXPECT_EQ(EffectiveGrpcHost(*config), "0.0.0.0");
  EXPECT_DOUBLE_EQ(EffectiveDrainTimeoutSeconds(*config), 30.0);
  EXPECT_DOUBLE_EQ(EffectiveEngineStallTimeoutSeconds(*config), 30.0);
  EXPECT_FALSE(EffectiveAuthEnabled(*config));
  auto hashed = ParseServerConfigJson(
      R"({"tenants": [{"name": "a", "apiKeySha256": ["8ad01026b2b2613b559ccb088e480e0d161365030085fb5cb060748451eb4c28"]}]})");
  ASSERT_TRUE(hashed.ok()) << hashed.status();
  EXPECT_TRUE(ValidateServerConfig(*hashed).ok());
  EXPECT_TRUE(EffectiveAuthEnabled(*hashed)) << "hashed keys alone turn auth on";
}

TEST(ServerConfigTest, PortZeroIsAllowed) {
  auto config = ParseServerConfigJson(R"({"listen": {"grpcPort": 0}})");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(EffectiveGrpcPort(*config), 0);
  EXPECT_TRUE(ValidateServerConfig(*config).ok());
}

TEST(ServerConfigTest, RejectsUnknownFieldsAndMalformedJson) {
  auto unknown = ParseServerConfigJson(R"({"listen": {"grpcPrt": 1}})");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("grpcPrt"), std::string::npos);
  EXPECT_FALSE(ParseServerConfigJson("{\"listen\": ").ok());
  EXPECT_FALSE(ParseServerConfigJson(R"({"listen": {"grpcPort": "x"}})").ok());
}

TEST(ServerConfigTest, ValidationNamesTheField) {
  struct Case {
    const char* json;
    const char* field;
  };
  const Case cases[] = {
      {R"({"listen": {"grpcPort": 70000}})", "listen.grpc_port"},
      {R"({"listen": {"httpPort": -1}})", "listen.http_port"},
      {R"({"models": [{"name": "x"}]})", "models[0].path"},
      {R"({"models": [{"path": "a", "backend": "tpu"}]})", "models[0].backend"},
      {R"({"models": [{"path": "a/m"}, {"path": "b/m"}]})", "models[1].name"},
      {R"({"models": [{"path": "a", "gpuMemoryFraction": 1.5}]})", "models[0].gpu_memory_fraction"},
      {R"({"tenants": [{"name": ""}]})", "tenants[0].name"},
      {R"({"tenants": [{"name": "a b"}]})", "tenants[0].name"},
      {R"({"tenants": [{"name": "a"}, {"name": "a"}]})", "tenants[1].name"},
      {R"({"tenants": [{"name": "a", "apiKeys": ["short"]}]})", "tenants[0].api_keys[0]"},
      {R"({"tenants": [{"name": "a", "apiKeys": ["12345678"]}, {"name": "b", "apiKeys": ["12345678"]}]})",
       "tenants[1].api_keys"},
      {R"({"tenants": [{"name": "a", "priority": 101}]})", "tenants[0].priority"},
      {R"({"auth": {"enabled": true}})", "auth.enabled"},
      {R"({"logLevel": "loud"})", "log_level"},
      {R"({"drainTimeoutSeconds": -1})", "drain_timeout_seconds"},
      {R"({"engineStallTimeoutSeconds": 0})", "engine_stall_timeout_seconds"},
      {R"({"tenants": [{"name": "a", "apiKeySha256": ["abc"]}]})", "tenants[0].api_key_sha256[0]"},
      {R"({"tenants": [{"name": "a", "apiKeySha256": ["g000000000000000000000000000000000000000000000000000000000000000"]}]})",
       "tenants[0].api_key_sha256[0]"},
      // The same key in clear for one tenant and hashed for another.
      {R"({"tenants": [{"name": "a", "apiKeys": ["key-bbbbbbbb"]},
                       {"name": "b", "apiKeySha256": ["8ad01026b2b2613b559ccb088e480e0d161365030085fb5cb060748451eb4c28"]}]})",
       "tenants[1].api_key_sha256"},
      {R"({"engine_stall_timeout_seconds": 3601})", "engine_stall_timeout_seconds"},
      {R"({"tenants": [{"name": "_other"}]})", "tenants[0].name"},
      {R"({"limits": {"maxTenantLabelValues": -1}})", "limits.max_tenant_label_values"},
      {R"({"models": [{"path": "a", "diffusion": {"defaultSampler": "plms"}}]})", "models[0].diffusion.default_sampler"},
      {R"({"models": [{"path": "a", "diffusion": {"defaultSampler": "schedule"}}]})",
       "models[0].diffusion.default_sampler: \"schedule\" needs diffusion.sampler_schedule"},
  };
  for (const Case& c : cases) {
    auto config = ParseServerConfigJson(c.json);
    ASSERT_TRUE(config.ok()) << c.json << ": " << config.status();
    const absl::Status status = ValidateServerConfig(*config);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.json;
    EXPECT_NE(status.message().find(c.field), std::string::npos)
        << c.json << " gave: " << status.message();
  }
}

// A config that holds keys must not put them in its errors: they go to the
// log and to stderr.
TEST(ServerConfigTest, ErrorsDoNotEchoKeys) {
  const char* key = "sk-secret-4f1c9e";
  const std::string configs[] = {
      absl::StrCat(R"({"tenants": [{"name": "a", "apiKeys": [")", key, R"(", 7]}]})"),
      absl::StrCat(R"({"tenants": [{"name": "a", "apiKey": [")", key, R"("]}]})"),
      absl::StrCat(R"({"tenants": [{"name": "a", "apiKeySha256": [")", key, R"("]}]})"),
      absl::StrCat(R"({"tenants": [{"name": "a", "apiKeys": [")", key, R"("]}, {"name": "b", "apiKeys": [")", key,
                   R"("]}]})"),
      absl::StrCat(R"({"tenants": [{"name": "a", "apiKeys": [")", key, R"(]}]})"),
      absl::StrCat(R"({"tenants": [{"name": "a", "apiKeys": [")", key, "\x01\xff", R"("]}]})"),
  };
  for (const std::string& json : configs) {
    auto config = ParseServerConfigJson(json);
    const absl::Status status = config.ok() ? ValidateServerConfig(*config) : config.status();
    EXPECT_FALSE(status.ok()) << json;
    EXPECT_EQ(status.message().find("sk-secret"), std::string::npos) << json << " gave: " << status.message();
  }
}

TEST(ServerConfigTest, ModelNameDefaultsToDirectoryBaseName) {
  tern::v1::ModelConfig model;
  model.set_path("/srv/models/TinyLlama-1.1B/");
  EXPECT_EQ(EffectiveModelName(model), "TinyLlama-1.1B");
  model.set_name("chat");
  EXPECT_EQ(EffectiveModelName(model), "chat");
}

TEST(ServerConfigTest, LoadReportsMissingFile) {
  auto config = LoadServerConfigFile("/nonexistent/ternd.json");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tern::server
