// Loading and checking ternd's configuration (schema: tern.v1.ServerConfig
// in proto/tern/v1/config.proto).
//
// The JSON file is parsed with protobuf's JSON mapping; unknown fields are an
// error, so a typo never silently falls back to a default. Validation runs
// after flags are applied, so flags and file are checked the same way.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "tern/v1/config.pb.h"

namespace tern::server {

inline constexpr int kDefaultGrpcPort = 50051;
inline constexpr int kDefaultHttpPort = 8000;
inline constexpr double kDefaultDrainTimeoutSeconds = 30.0;
inline constexpr double kDefaultEngineStallTimeoutSeconds = 30.0;

// Parses a JSON document. INVALID_ARGUMENT names the offending field.
absl::StatusOr<tern::v1::ServerConfig> ParseServerConfigJson(const std::string& json);

// Reads and parses a file. NOT_FOUND when it cannot be opened.
absl::StatusOr<tern::v1::ServerConfig> LoadServerConfigFile(const std::string& path);

// Checks ranges and cross-field rules (unique tenant names and API keys,
// ports in [0, 65535], model names unique, ...). INVALID_ARGUMENT on the first
// problem found, naming the field.
absl::Status ValidateServerConfig(const tern::v1::ServerConfig& config);

// Effective values with defaults applied.
int EffectiveGrpcPort(const tern::v1::ServerConfig& config);
int EffectiveHttpPort(const tern::v1::ServerConfig& config);
std::string EffectiveGrpcHost(const tern::v1::ServerConfig& config);
std::string EffectiveHttpHost(const tern::v1::ServerConfig& config);
double EffectiveDrainTimeoutSeconds(const tern::v1::ServerConfig& config);
double EffectiveEngineStallTimeoutSeconds(const tern::v1::ServerConfig& config);
// Auth is on when the config says so, or, when unset, when any tenant has a key.
bool EffectiveAuthEnabled(const tern::v1::ServerConfig& config);

// The name a model is served under: its configured name, else the base name
// of its directory.
std::string EffectiveModelName(const tern::v1::ModelConfig& model);

}  // namespace tern::server
