// Fuzzes ternd's configuration file (server/config/server_config.h): JSON
// through protobuf's JSON mapping into tern.v1.ServerConfig, then the
// range and cross-field checks, then the effective values main() reads.
// Parsing and validation must answer OK or INVALID_ARGUMENT; a validated
// config's effective ports must be real ports.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz/fuzz_support.h"
#include "server/config/server_config.h"
#include "server/validation/request_validation.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto config = tern::server::ParseServerConfigJson(std::string(reinterpret_cast<const char*>(data), size));
  if (!config.ok()) {
    FUZZ_ASSERT(config.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  const absl::Status valid = tern::server::ValidateServerConfig(*config);
  if (!valid.ok()) {
    FUZZ_ASSERT(valid.code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  const int grpc_port = tern::server::EffectiveGrpcPort(*config);
  const int http_port = tern::server::EffectiveHttpPort(*config);
  FUZZ_ASSERT(grpc_port >= 0 && grpc_port <= 65535);
  FUZZ_ASSERT(http_port >= 0 && http_port <= 65535);
  (void)tern::server::EffectiveGrpcHost(*config);
  (void)tern::server::EffectiveHttpHost(*config);
  FUZZ_ASSERT(tern::server::EffectiveDrainTimeoutSeconds(*config) >= 0);
  FUZZ_ASSERT(tern::server::EffectiveEngineStallTimeoutSeconds(*config) > 0);
  (void)tern::server::EffectiveAuthEnabled(*config);
  for (const auto& model : config->models()) FUZZ_ASSERT(!tern::server::EffectiveModelName(model).empty());
  const auto limits = tern::server::RequestLimits::FromConfig(config->limits());
  FUZZ_ASSERT(limits.max_n >= 1 && limits.max_prompt_bytes >= 1);
  return 0;
}
