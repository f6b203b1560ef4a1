#include "server/front/call_scope.h"

#include <random>

#include "absl/strings/str_format.h"
#include "server/front/status_mapping.h"
#include "spdlog/spdlog.h"

namespace tern::server {
namespace {

std::string RandomRequestId() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return absl::StrFormat("%016x", rng());
}

}  // namespace

CallScope::CallScope(const ServiceContext& services, CallInfo info)
    : services_(services), info_(std::move(info)), start_(std::chrono::steady_clock::now()) {}

absl::StatusOr<const scheduler::Tenant*> CallScope::Authenticate() {
  if (!authenticated_.has_value()) {
    authenticated_ = services_.authenticator->Authenticate(info_.authorization);
    if (authenticated_->ok()) tenant_ = (**authenticated_)->name;
  }
  return *authenticated_;
}

const std::string& CallScope::AssignRequestId(const std::string& client_id) {
  if (client_id.empty() && !request_id_.empty()) return request_id_;  // assigned already
  request_id_ = client_id;
  if (request_id_.empty()) request_id_ = info_.request_id.substr(0, 128);
  if (request_id_.empty()) request_id_ = RandomRequestId();
  return request_id_;
}

absl::Status CallScope::Finish(const absl::Status& status) {
  if (finished_) return status;
  finished_ = true;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const std::string code = absl::StatusCodeToString(status.code());
  std::string http_status;
  if (info_.transport == Transport::kGrpc) {
    services_.metrics->RecordRpc(info_.method, code, seconds);
  } else {
    const int http = HttpStatusOf(status.code());
    services_.metrics->RecordHttp(info_.method, http, seconds);
    http_status = absl::StrFormat(" status=%d", http);
  }
  const auto level = status.ok()                                    ? spdlog::level::info
                     : status.code() == absl::StatusCode::kInternal ? spdlog::level::err
                                                                    : spdlog::level::warn;
  spdlog::log(level, "{} method={} request_id={} tenant={} peer={} code={}{} ms={:.3f}{}{}",
              info_.transport == Transport::kGrpc ? "rpc" : "http", info_.method,
              request_id_.empty() ? "-" : request_id_, tenant_, info_.peer.empty() ? "-" : info_.peer, code,
              http_status, seconds * 1e3, status.ok() ? "" : " error=", std::string(status.message()));
  return status;
}

}  // namespace tern::server
