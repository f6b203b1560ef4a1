#include "server/auth/authenticator.h"

#include <cctype>
#include <optional>

namespace tern::server {

std::unique_ptr<Authenticator> Authenticator::FromConfig(const tern::v1::ServerConfig& config) {
  std::unique_ptr<Authenticator> auth(new Authenticator());
  bool keys_exist = false;
  for (const auto& tc : config.tenants()) {
    auto tenant = std::make_unique<scheduler::Tenant>();
    tenant->name = tc.name();
    tenant->weight = tc.has_weight() ? tc.weight() : 1.0;
    tenant->priority = tc.priority();
    tenant->max_concurrent_requests = tc.max_concurrent_requests();
    tenant->max_tokens_per_minute = tc.max_tokens_per_minute();
    tenant->allowed_models.assign(tc.allowed_models().begin(), tc.allowed_models().end());
    for (const auto& key : tc.api_keys()) {
      auth->keys_.push_back({Sha256(key), tenant.get()});
      keys_exist = true;
    }
    for (const auto& hex : tc.api_key_sha256()) {
      const std::optional<KeyDigest> digest = ParseHexDigest(hex);
      if (!digest.has_value()) continue;  // ValidateServerConfig rejects it
      auth->keys_.push_back({*digest, tenant.get()});
      keys_exist = true;
    }
    if (tenant->name == scheduler::kDefaultTenantName) auth->default_tenant_ = tenant.get();
    auth->tenants_.push_back(std::move(tenant));
  }
  auth->enabled_ = config.auth().has_enabled() ? config.auth().enabled() : keys_exist;
  if (auth->default_tenant_ == nullptr) {
    auto tenant = std::make_unique<scheduler::Tenant>();
    tenant->name = scheduler::kDefaultTenantName;
    auth->default_tenant_ = tenant.get();
    auth->tenants_.push_back(std::move(tenant));
  }
  return auth;
}

absl::StatusOr<const scheduler::Tenant*> Authenticator::Authenticate(
    std::string_view authorization_header) const {
  if (!enabled_) return default_tenant_;
  if (authorization_header.empty()) {
    return absl::UnauthenticatedError(
        "missing API key: send the header (gRPC metadata) \"authorization: Bearer <key>\"");
  }
  constexpr std::string_view kScheme = "bearer ";
  bool scheme_matches = authorization_header.size() > kScheme.size();
  for (size_t i = 0; scheme_matches && i < kScheme.size(); ++i) {
    scheme_matches = std::tolower(static_cast<unsigned char>(authorization_header[i])) == kScheme[i];
  }
  if (!scheme_matches) {
    return absl::UnauthenticatedError(
        "malformed authorization header: expected \"Bearer <key>\"");
  }
  std::string_view key = authorization_header.substr(kScheme.size());
  while (!key.empty() && std::isspace(static_cast<unsigned char>(key.front()))) key.remove_prefix(1);
  while (!key.empty() && std::isspace(static_cast<unsigned char>(key.back()))) key.remove_suffix(1);
  if (key.empty()) return absl::UnauthenticatedError("unknown API key");
  // Every digest is compared, in constant time each, whether or not one
  // matched; validation makes digests unique.
  const KeyDigest digest = Sha256(key);
  const scheduler::Tenant* tenant = nullptr;
  for (const Key& k : keys_) {
    const bool match = DigestsEqual(digest, k.digest);
    tenant = match ? k.tenant : tenant;
  }
  if (tenant == nullptr) return absl::UnauthenticatedError("unknown API key");
  return tenant;
}

}  // namespace tern::server
