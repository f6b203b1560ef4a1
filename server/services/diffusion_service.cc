#include "server/services/diffusion_service.h"

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "server/front/call_scope.h"
#include "server/front/generation.h"
#include "server/grpc/call_info.h"
#include "server/grpc/status_conversion.h"
#include "server/services/finished_writer.h"
#include "server/services/image_request.h"
#include "server/services/image_stream.h"

namespace tern::server {

DiffusionService::DiffusionService(const ServiceContext& services) : services_(services) {
  if (services.metrics != nullptr) {
    metrics_ = std::make_unique<DiffusionMetrics>(services.metrics->registry(), &services.metrics->tenant_labels());
    services.metrics->AddCollectable(std::make_shared<DiffusionCollector>(services.models));
  }
}

grpc::ServerWriteReactor<tern::v1::GenerateImageResponse>* DiffusionService::GenerateImage(
    grpc::CallbackServerContext* context, const tern::v1::GenerateImageRequest* request) {
  CallScope scope(services_, GrpcCallInfo(*context, "/tern.v1.Diffusion/GenerateImage"));
  scope.AssignRequestId(request->request_id());
  const ServedModel* model = nullptr;
  absl::StatusOr<scheduler::DiffusionRequest> prepared = [&]() -> absl::StatusOr<scheduler::DiffusionRequest> {
    const scheduler::Tenant* tenant = nullptr;
    ASSIGN_OR_RETURN(model, Admit(scope, request->model(), &tenant));
    RETURN_IF_ERROR(ValidateGenerateImageRequest(*request, services_.limits));
    if (model->diffusion == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model: \"", request->model(), "\" is a language model; GenerateImage needs a diffusion model"));
    }
    return MakeDiffusionRequest(*request, request->model(), *model->diffusion, scope.request_id(), *tenant,
                                scope.info().deadline);
  }();
  if (!prepared.ok()) {
    return new FinishedWriter<tern::v1::GenerateImageResponse>(ToGrpcStatus(scope.Finish(prepared.status())));
  }
  return ImageReactor::Start(std::move(scope), model->diffusion->engine.get(), *std::move(prepared),
                             request->model(), metrics_.get());
}

}  // namespace tern::server
