#include "server/services/models_service.h"

#include "runtime/base/status_macros.h"
#include "server/services/rpc_scope.h"

namespace tern::server {

grpc::ServerUnaryReactor* ModelsService::ListModels(grpc::CallbackServerContext* context,
                                                    const tern::v1::ListModelsRequest* request,
                                                    tern::v1::ListModelsResponse* response) {
  RpcScope scope(services_, context, "/tern.v1.Models/ListModels");
  scope.AssignRequestId("");
  absl::Status status = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const scheduler::Tenant* tenant, scope.Authenticate());
    for (const auto& info : services_.models->List()) {
      if (tenant->MayUseModel(info.name())) *response->add_models() = info;
    }
    return absl::OkStatus();
  }();
  auto* reactor = context->DefaultReactor();
  reactor->Finish(scope.Finish(status));
  return reactor;
}

grpc::ServerUnaryReactor* ModelsService::GetModelInfo(grpc::CallbackServerContext* context,
                                                      const tern::v1::GetModelInfoRequest* request,
                                                      tern::v1::ModelInfo* response) {
  RpcScope scope(services_, context, "/tern.v1.Models/GetModelInfo");
  scope.AssignRequestId("");
  absl::Status status = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const scheduler::Tenant* tenant, scope.Authenticate());
    if (request->name().empty()) return absl::InvalidArgumentError("name: is required");
    ASSIGN_OR_RETURN(const ServedModel* model, services_.models->Find(request->name()));
    if (!tenant->MayUseModel(request->name())) {
      return absl::NotFoundError("model \"" + request->name() + "\" is not served to this tenant");
    }
    *response = model->info;
    return absl::OkStatus();
  }();
  auto* reactor = context->DefaultReactor();
  reactor->Finish(scope.Finish(status));
  return reactor;
}

}  // namespace tern::server
