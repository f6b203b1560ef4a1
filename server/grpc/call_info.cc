#include "server/grpc/call_info.h"

#include <chrono>

namespace tern::server {
namespace {

std::string Metadata(const grpc::CallbackServerContext& context, const char* key) {
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find(key);
  if (it == metadata.end()) return {};
  return std::string(it->second.data(), it->second.size());
}

}  // namespace

CallInfo GrpcCallInfo(const grpc::CallbackServerContext& context, const char* method) {
  CallInfo info;
  info.transport = Transport::kGrpc;
  info.method = method;
  info.peer = context.peer();
  info.authorization = Metadata(context, "authorization");
  info.request_id = Metadata(context, "x-request-id");
  const auto deadline = context.deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) info.deadline = absl::FromChrono(deadline);
  return info;
}

}  // namespace tern::server
