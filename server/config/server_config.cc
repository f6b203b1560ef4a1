#include "server/config/server_config.h"

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "runtime/base/status_macros.h"
#include "runtime/model/moa_plan.h"
#include "runtime/model/weight_scheme.h"
#include "server/auth/key_digest.h"
#include "server/observability/tenant_labels.h"

namespace tern::server {
namespace {

absl::Status Invalid(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("config: ", field, ": ", why));
}

absl::Status CheckPort(const std::string& field, int port) {
  if (port < 0 || port > 65535) return Invalid(field, absl::StrCat(port, " is not in [0, 65535]"));
  return absl::OkStatus();
}

absl::Status CheckOneOf(const std::string& field, const std::string& value,
                        std::initializer_list<const char*> allowed) {
  if (value.empty()) return absl::OkStatus();
  std::string list;
  for (const char* candidate : allowed) {
    if (value == candidate) return absl::OkStatus();
    absl::StrAppend(&list, list.empty() ? "" : ", ", candidate);
  }
  return Invalid(field, absl::StrCat("\"", value, "\" is not one of: ", list));
}

absl::Status ValidateModel(const tern::v1::ModelConfig& model, int index) {
  const std::string field = absl::StrCat("models[", index, "]");
  if (model.path().empty()) return Invalid(field + ".path", "is required");
  RETURN_IF_ERROR(CheckOneOf(field + ".backend", model.backend(), {"auto", "cpu", "cuda"}));
  RETURN_IF_ERROR(
      CheckOneOf(field + ".dtype", model.dtype(), {"auto", "float32", "float16", "bfloat16"}));
  if (auto scheme = runtime::ParseWeightSchemeRequest(model.weight_scheme()); !scheme.ok()) {
    return Invalid(field + ".weight_scheme", std::string(scheme.status().message()));
  }
  if (auto scheme = runtime::ParseAttentionScheme(model.attention_scheme()); !scheme.ok()) {
    return Invalid(field + ".attention_scheme", std::string(scheme.status().message()));
  }
  RETURN_IF_ERROR(
      CheckOneOf(field + ".kv_cache_dtype", model.kv_cache_dtype(), {"auto", "fp8", "int8"}));
  if (model.max_context_length() < 0) return Invalid(field + ".max_context_length", "is negative");
  if (model.has_gpu_memory_fraction() &&
      !(model.gpu_memory_fraction() > 0.0 && model.gpu_memory_fraction() <= 1.0)) {
    return Invalid(field + ".gpu_memory_fraction",
                   absl::StrCat(model.gpu_memory_fraction(), " is not in (0, 1]"));
  }
  if (model.cpu_kv_cache_mib() < 0) return Invalid(field + ".cpu_kv_cache_mib", "is negative");
  if (model.kv_block_size() < 0 || model.kv_block_size() > 256) {
    return Invalid(field + ".kv_block_size", absl::StrCat(model.kv_block_size(), " is not in [0, 256]"));
  }
  if (model.max_num_seqs() < 0) return Invalid(field + ".max_num_seqs", "is negative");
  if (model.has_device_share() && !(model.device_share() > 0.0 && model.device_share() <= 1e6)) {
    return Invalid(field + ".device_share", absl::StrCat(model.device_share(), " is not in (0, 1e6]"));
  }
  if (model.max_num_batched_tokens() < 0) {
    return Invalid(field + ".max_num_batched_tokens", "is negative");
  }
  const tern::v1::DiffusionModelConfig& diffusion = model.diffusion();
  if (diffusion.max_batch_rows() < 0 || diffusion.max_batch_rows() > 1024) {
    return Invalid(field + ".diffusion.max_batch_rows", absl::StrCat(diffusion.max_batch_rows(), " is not in [0, 1024]"));
  }
  if (diffusion.default_steps() < 0 || diffusion.default_steps() > 1000) {
    return Invalid(field + ".diffusion.default_steps", absl::StrCat(diffusion.default_steps(), " is not in [0, 1000]"));
  }
  if (diffusion.has_default_guidance_scale() &&
      !(diffusion.default_guidance_scale() >= 0.0 && diffusion.default_guidance_scale() <= 100.0)) {
    return Invalid(field + ".diffusion.default_guidance_scale",
                   absl::StrCat(diffusion.default_guidance_scale(), " is not in [0, 100]"));
  }
  if (!diffusion.default_sampler().empty()) {
    RETURN_IF_ERROR(CheckOneOf(field + ".diffusion.default_sampler", diffusion.default_sampler(),
                               {"ddim", "dpmpp2m", "euler", "schedule"}));
    if (diffusion.default_sampler() == "schedule" && diffusion.sampler_schedule().empty()) {
      return Invalid(field + ".diffusion.default_sampler", "\"schedule\" needs diffusion.sampler_schedule (a file)");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateTenant(const tern::v1::TenantConfig& tenant, int index) {
  const std::string field = absl::StrCat("tenants[", index, "]");
  if (tenant.name().empty()) return Invalid(field + ".name", "is required");
  if (tenant.name() == kOverflowTenantLabel) {
    return Invalid(field + ".name", absl::StrCat("\"", kOverflowTenantLabel,
                                                 "\" is the metrics label of tenants beyond "
                                                 "limits.max_tenant_label_values"));
  }
  for (char c : tenant.name()) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) return Invalid(field + ".name", "may use only letters, digits, '-', '_' and '.'");
  }
  if (tenant.has_weight() && !(tenant.weight() > 0.0)) {
    return Invalid(field + ".weight", absl::StrCat(tenant.weight(), " is not > 0"));
  }
  if (tenant.priority() < -100 || tenant.priority() > 100) {
    return Invalid(field + ".priority", absl::StrCat(tenant.priority(), " is not in [-100, 100]"));
  }
  if (tenant.max_concurrent_requests() < 0) {
    return Invalid(field + ".max_concurrent_requests", "is negative");
  }
  if (tenant.max_tokens_per_minute() < 0) return Invalid(field + ".max_tokens_per_minute", "is negative");
  for (int k = 0; k < tenant.api_keys_size(); ++k) {
    if (tenant.api_keys(k).size() < 8) {
      return Invalid(absl::StrCat(field, ".api_keys[", k, "]"), "is shorter than 8 characters");
    }
  }
  for (int k = 0; k < tenant.api_key_sha256_size(); ++k) {
    if (!ParseHexDigest(tenant.api_key_sha256(k)).has_value()) {
      return Invalid(absl::StrCat(field, ".api_key_sha256[", k, "]"),
                     "is not a SHA-256 digest: 64 hex digits, as `printf %s KEY | sha256sum` prints them");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<tern::v1::ServerConfig> ParseServerConfigJson(const std::string& json) {
  tern::v1::ServerConfig config;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = google::protobuf::util::JsonStringToMessage(json, &config, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("config: ", std::string(status.message())));
  }
  return config;
}

absl::StatusOr<tern::v1::ServerConfig> LoadServerConfigFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("config file ", path, " cannot be opened"));
  std::ostringstream text;
  text << in.rdbuf();
  auto config = ParseServerConfigJson(text.str());
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(path, ": ", config.status().message()));
  }
  return config;
}

absl::Status ValidateServerConfig(const tern::v1::ServerConfig& config) {
  if (config.listen().has_grpc_port()) {
    RETURN_IF_ERROR(CheckPort("listen.grpc_port", config.listen().grpc_port()));
  }
  if (config.listen().has_http_port()) {
    RETURN_IF_ERROR(CheckPort("listen.http_port", config.listen().http_port()));
  }
  if (config.has_drain_timeout_seconds() &&
      !(config.drain_timeout_seconds() >= 0.0 && config.drain_timeout_seconds() <= 3600.0)) {
    return Invalid("drain_timeout_seconds",
                   absl::StrCat(config.drain_timeout_seconds(), " is not in [0, 3600]"));
  }
  if (config.has_engine_stall_timeout_seconds() &&
      !(config.engine_stall_timeout_seconds() > 0.0 && config.engine_stall_timeout_seconds() <= 3600.0)) {
    return Invalid("engine_stall_timeout_seconds",
                   absl::StrCat(config.engine_stall_timeout_seconds(), " is not in (0, 3600]"));
  }
  RETURN_IF_ERROR(CheckOneOf("log_level", config.log_level(),
                             {"trace", "debug", "info", "warn", "error"}));

  std::set<std::string> model_names;
  for (int i = 0; i < config.models_size(); ++i) {
    RETURN_IF_ERROR(ValidateModel(config.models(i), i));
    const std::string name = EffectiveModelName(config.models(i));
    if (!model_names.insert(name).second) {
      return Invalid(absl::StrCat("models[", i, "].name"),
                     absl::StrCat("\"", name, "\" is served twice; give one a distinct name"));
    }
  }

  std::set<std::string> tenant_names;
  // Keys compared as digests, so a key in clear and the same key hashed meet.
  std::set<KeyDigest> keys;
  for (int i = 0; i < config.tenants_size(); ++i) {
    const auto& tenant = config.tenants(i);
    RETURN_IF_ERROR(ValidateTenant(tenant, i));
    if (!tenant_names.insert(tenant.name()).second) {
      return Invalid(absl::StrCat("tenants[", i, "].name"),
                     absl::StrCat("\"", tenant.name(), "\" is defined twice"));
    }
    for (const auto& key : tenant.api_keys()) {
      if (!keys.insert(Sha256(key)).second) {
        return Invalid(absl::StrCat("tenants[", i, "].api_keys"),
                       "an API key belongs to more than one tenant (or is given twice)");
      }
    }
    for (const auto& hex : tenant.api_key_sha256()) {
      if (!keys.insert(*ParseHexDigest(hex)).second) {
        return Invalid(absl::StrCat("tenants[", i, "].api_key_sha256"),
                       "an API key belongs to more than one tenant (or is given twice)");
      }
    }
  }
  if (config.auth().has_enabled() && config.auth().enabled() && keys.empty()) {
    return Invalid("auth.enabled", "is true but no tenant has an API key");
  }

  const auto& limits = config.limits();
  if (limits.max_prompt_bytes() < 0) return Invalid("limits.max_prompt_bytes", "is negative");
  if (limits.max_tokens() < 0) return Invalid("limits.max_tokens", "is negative");
  if (limits.max_n() < 0 || limits.max_n() > 256) {
    return Invalid("limits.max_n", absl::StrCat(limits.max_n(), " is not in [0, 256]"));
  }
  if (limits.max_stop_strings() < 0) return Invalid("limits.max_stop_strings", "is negative");
  if (limits.max_queued_requests() < 0) return Invalid("limits.max_queued_requests", "is negative");
  if (limits.max_tenant_label_values() < 0) return Invalid("limits.max_tenant_label_values", "is negative");
  return absl::OkStatus();
}

int EffectiveGrpcPort(const tern::v1::ServerConfig& config) {
  return config.listen().has_grpc_port() ? config.listen().grpc_port() : kDefaultGrpcPort;
}

int EffectiveHttpPort(const tern::v1::ServerConfig& config) {
  return config.listen().has_http_port() ? config.listen().http_port() : kDefaultHttpPort;
}

std::string EffectiveGrpcHost(const tern::v1::ServerConfig& config) {
  return config.listen().grpc_host().empty() ? "0.0.0.0" : config.listen().grpc_host();
}

std::string EffectiveHttpHost(const tern::v1::ServerConfig& config) {
  return config.listen().http_host().empty() ? "0.0.0.0" : config.listen().http_host();
}

double EffectiveDrainTimeoutSeconds(const tern::v1::ServerConfig& config) {
  return config.has_drain_timeout_seconds() ? config.drain_timeout_seconds()
                                            : kDefaultDrainTimeoutSeconds;
}

double EffectiveEngineStallTimeoutSeconds(const tern::v1::ServerConfig& config) {
  return config.has_engine_stall_timeout_seconds() ? config.engine_stall_timeout_seconds()
                                                   : kDefaultEngineStallTimeoutSeconds;
}

bool EffectiveAuthEnabled(const tern::v1::ServerConfig& config) {
  if (config.auth().has_enabled()) return config.auth().enabled();
  for (const auto& tenant : config.tenants()) {
    if (tenant.api_keys_size() > 0 || tenant.api_key_sha256_size() > 0) return true;
  }
  return false;
}

std::string EffectiveModelName(const tern::v1::ModelConfig& model) {
  if (!model.name().empty()) return model.name();
  std::filesystem::path path(model.path());
  if (!path.has_filename()) path = path.parent_path();  // "dir/" -> "dir"
  return path.filename().string();
}

}  // namespace tern::server
