// What every handler needs, whatever its transport (gRPC's tern.v1
// services, HTTP's OpenAI-compatible API), borrowed from the Daemon that owns
// it all and outlives both servers.
#pragma once

#include "server/auth/authenticator.h"
#include "server/models/model_registry.h"
#include "server/observability/server_metrics.h"
#include "server/validation/request_validation.h"

namespace tern::server {

struct ServiceContext {
  const ModelRegistry* models = nullptr;
  const Authenticator* authenticator = nullptr;
  ServerMetrics* metrics = nullptr;
  RequestLimits limits;
};

}  // namespace tern::server
