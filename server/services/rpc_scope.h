// RpcScope: the bookkeeping of one gRPC call to a tern.v1 method. It
// authenticates the caller, assigns the request id (the client's, the
// x-request-id metadata, or a fresh one), and on Finish records the status
// code and latency in metrics and writes one log line.
//
// Owned by the handler or reactor of its call; not thread-safe.
#pragma once

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/server_context.h"
#include "scheduler/tenant.h"
#include "server/services/service_context.h"

namespace tern::server {

class RpcScope {
 public:
  RpcScope(const ServiceContext& services, grpc::CallbackServerContext* context, const char* method);

  // Authenticates from the call's metadata. UNAUTHENTICATED on failure.
  absl::StatusOr<const scheduler::Tenant*> Authenticate();

  // Sets the request id: `client_id` when non-empty, else x-request-id, else
  // a random 16-hex-digit id. Returns it.
  const std::string& AssignRequestId(const std::string& client_id);

  // Records the outcome. Call once, with the status the call ends with.
  grpc::Status Finish(const absl::Status& status);

  const std::string& request_id() const { return request_id_; }
  const char* method() const { return method_; }

 private:
  const ServiceContext& services_;
  grpc::CallbackServerContext* context_;
  const char* method_;
  std::string request_id_;
  std::string tenant_ = "-";
  std::chrono::steady_clock::time_point start_;
  bool finished_ = false;
};

}  // namespace tern::server
