// What every tern.v1 service handler needs, borrowed from the Daemon that
// owns it all and outlives the gRPC server.
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
