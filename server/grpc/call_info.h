// The gRPC transport's CallInfo (server/front/call_scope.h): method name,
// peer, the authorization and x-request-id metadata, and the deadline.
#pragma once

#include "grpcpp/server_context.h"
#include "server/front/call_scope.h"

namespace tern::server {

CallInfo GrpcCallInfo(const grpc::CallbackServerContext& context, const char* method);

}  // namespace tern::server
