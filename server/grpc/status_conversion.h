// The one place where absl::Status becomes grpc::Status. Codes map one to one
// (both follow google.rpc.Code); the message is kept.
#pragma once

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace tern::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace tern::server
