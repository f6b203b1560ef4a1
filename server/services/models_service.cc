#include "server/services/models_service.h"

#include "runtime/base/status_macros.h"
#include "server/front/call_scope.h"
#include "server/front/generation.h"
#include "server/grpc/call_info.h"
#include "server/grpc/status_conversion.h"

namespace tern::server {

grpc::ServerUnaryReactor* ModelsService::ListModels(grpc::CallbackServerContext* context,
                                                    const tern::v1::ListModelsRequest* request,
                                                    tern::v1::ListModelsResponse* response) {
  CallScope scope(services_, GrpcCallInfo(*context, "/tern.v1.Models/ListModels"));
  scope.AssignRequestId("");
  absl::Status status = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const scheduler::Tenant* tenant, scope.Authenticate());
    for (auto& info : ModelsVisibleTo(services_, *tenant)) *response->add_models() = std::move(info);
    return absl::OkStatus();
  }();
  auto* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(scope.Finish(status)));
  return reactor;
}

grpc::ServerUnaryReactor* ModelsService::GetModelInfo(grpc::CallbackServerContext* context,
                                                      const tern::v1::GetModelInfoRequest* request,
                                                      tern::v1::ModelInfo* response) {
  CallScope scope(services_, GrpcCallInfo(*context, "/tern.v1.Models/GetModelInfo"));
  scope.AssignRequestId("");
  absl::Status status = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const scheduler::Tenant* tenant, scope.Authenticate());
    ASSIGN_OR_RETURN(const ServedModel* model, FindModelVisibleTo(services_, *tenant, request->name()));
    *response = model->info;
    return absl::OkStatus();
  }();
  auto* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(scope.Finish(status)));
  return reactor;
}

}  // namespace tern::server
