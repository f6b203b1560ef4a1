// Maps the `authorization: Bearer <key>` request header (gRPC metadata or
// HTTP header) to a tenant.
//
// Keys are kept only as SHA-256 digests (server/auth/key_digest.h): the
// config's keys in clear are hashed at startup, its api_key_sha256 entries
// are digests already. A presented key is hashed and compared with every
// configured digest, each in constant time and all of them whatever
// matches, so the time a rejection takes says nothing about any key. No
// key, presented or configured, is ever logged or put in an error message.
//
// Built once from the config and immutable afterwards, so any thread may call
// Authenticate concurrently. With auth off every caller is the tenant
// "default" (or the configured tenant of that name).
//
// Why not a gRPC interceptor: gRPC C++ server interceptors cannot fail a call
// with a chosen status (only cancel it), and health checks and reflection
// must stay open to Kubernetes probes and grpcurl. Each tern.v1 handler and
// each OpenAI-compatible HTTP handler calls Authenticate first through its
// CallScope (server/front/call_scope.h), so every such method is covered and
// the open services (health, reflection, /metrics, /healthz, /readyz) are
// open by construction.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "scheduler/tenant.h"
#include "server/auth/key_digest.h"
#include "tern/v1/config.pb.h"

namespace tern::server {

class Authenticator {
 public:
  // Builds tenants from a validated config (ValidateServerConfig passed).
  static std::unique_ptr<Authenticator> FromConfig(const tern::v1::ServerConfig& config);

  // `authorization_header` is the raw metadata value ("Bearer <key>"), empty
  // when absent. UNAUTHENTICATED when auth is on and the key is missing,
  // malformed or unknown; the message never echoes the key.
  absl::StatusOr<const scheduler::Tenant*> Authenticate(std::string_view authorization_header) const;

  bool enabled() const { return enabled_; }
  const std::vector<std::unique_ptr<scheduler::Tenant>>& tenants() const { return tenants_; }

 private:
  Authenticator() = default;

  struct Key {
    KeyDigest digest;
    const scheduler::Tenant* tenant;
  };

  bool enabled_ = false;
  std::vector<std::unique_ptr<scheduler::Tenant>> tenants_;
  std::vector<Key> keys_;
  const scheduler::Tenant* default_tenant_ = nullptr;
};

}  // namespace tern::server
