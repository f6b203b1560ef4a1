#include "server/services/rpc_scope.h"

#include <random>

#include "absl/strings/str_format.h"
#include "server/grpc/status_conversion.h"
#include "spdlog/spdlog.h"

namespace tern::server {
namespace {

std::string Metadata(const grpc::CallbackServerContext* context, const char* key) {
  const auto& metadata = context->client_metadata();
  const auto it = metadata.find(key);
  if (it == metadata.end()) return {};
  return std::string(it->second.data(), it->second.size());
}

std::string RandomRequestId() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return absl::StrFormat("%016x", rng());
}

}  // namespace

RpcScope::RpcScope(const ServiceContext& services, grpc::CallbackServerContext* context,
                   const char* method)
    : services_(services), context_(context), method_(method), start_(std::chrono::steady_clock::now()) {}

absl::StatusOr<const scheduler::Tenant*> RpcScope::Authenticate() {
  auto tenant = services_.authenticator->Authenticate(Metadata(context_, "authorization"));
  if (tenant.ok()) tenant_ = (*tenant)->name;
  return tenant;
}

const std::string& RpcScope::AssignRequestId(const std::string& client_id) {
  request_id_ = client_id;
  if (request_id_.empty()) request_id_ = Metadata(context_, "x-request-id").substr(0, 128);
  if (request_id_.empty()) request_id_ = RandomRequestId();
  return request_id_;
}

grpc::Status RpcScope::Finish(const absl::Status& status) {
  if (!finished_) {
    finished_ = true;
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const std::string code = absl::StatusCodeToString(status.code());
    services_.metrics->RecordRpc(method_, code, seconds);
    const auto level = status.ok() ? spdlog::level::info
                       : status.code() == absl::StatusCode::kInternal ? spdlog::level::err
                                                                      : spdlog::level::warn;
    spdlog::log(level, "rpc method={} request_id={} tenant={} peer={} code={} ms={:.3f}{}{}", method_,
                request_id_.empty() ? "-" : request_id_, tenant_, context_->peer(), code,
                seconds * 1e3, status.ok() ? "" : " error=", std::string(status.message()));
  }
  return ToGrpcStatus(status);
}

}  // namespace tern::server
