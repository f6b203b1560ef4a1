// CallScope: the bookkeeping of one call, whatever its transport: a tern.v1
// gRPC method or a request to the OpenAI-compatible HTTP API. It
// authenticates the caller, assigns the request id (the client's, the
// x-request-id header or metadata, or a fresh one), and on Finish records the
// outcome in metrics (gRPC: tern_grpc_requests_total{method,code} and its
// duration; HTTP: tern_http_requests_total{route,code} and its duration, code
// being the HTTP status the outcome maps to) and writes one log line.
//
// The transport fills a CallInfo from its own request (server/grpc/call_info.h
// for gRPC, server/openai/openai_api.cc for HTTP) and never authenticates or
// logs by itself. Owned by the handler or reactor of its call; not
// thread-safe.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "scheduler/tenant.h"
#include "server/front/service_context.h"

namespace tern::server {

enum class Transport { kGrpc, kHttp };

// What the transport knows about a call before reading its request.
struct CallInfo {
  Transport transport = Transport::kGrpc;
  // gRPC: the full method name ("/tern.v1.Llm/Generate"); HTTP: the route
  // ("/v1/chat/completions").
  std::string method;
  std::string peer;           // e.g. "ipv4:127.0.0.1:50514"
  std::string authorization;  // the raw "authorization" value; empty when absent
  std::string request_id;     // the raw "x-request-id" value; empty when absent
  // When the client gives up (gRPC deadline); InfiniteFuture when it never does.
  absl::Time deadline = absl::InfiniteFuture();
};

class CallScope {
 public:
  CallScope(const ServiceContext& services, CallInfo info);

  // Authenticates from the call's authorization value. UNAUTHENTICATED on
  // failure. The first answer is kept: later calls return it again.
  absl::StatusOr<const scheduler::Tenant*> Authenticate();

  // Sets the request id: `client_id` when non-empty, else x-request-id (its
  // first 128 bytes), else a random 16-hex-digit id. Returns it.
  const std::string& AssignRequestId(const std::string& client_id);

  // Records the outcome. The first call counts; later ones only return
  // `status`.
  absl::Status Finish(const absl::Status& status);

  const std::string& request_id() const { return request_id_; }
  const CallInfo& info() const { return info_; }
  const ServiceContext& services() const { return services_; }
  // The authenticated tenant's name, "-" before Authenticate succeeded.
  const std::string& tenant() const { return tenant_; }

 private:
  const ServiceContext& services_;
  CallInfo info_;
  std::string request_id_;
  std::optional<absl::StatusOr<const scheduler::Tenant*>> authenticated_;
  std::string tenant_ = "-";
  std::chrono::steady_clock::time_point start_;
  bool finished_ = false;
};

}  // namespace tern::server
