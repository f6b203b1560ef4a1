#include "server/services/diffusion_service.h"

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "server/front/call_scope.h"
#include "server/front/generation.h"
#include "server/grpc/call_info.h"
#include "server/grpc/status_conversion.h"
#include "server/services/finished_writer.h"

namespace tern::server {

grpc::ServerWriteReactor<tern::v1::GenerateImageResponse>* DiffusionService::GenerateImage(
    grpc::CallbackServerContext* context, const tern::v1::GenerateImageRequest* request) {
  CallScope scope(services_, GrpcCallInfo(*context, "/tern.v1.Diffusion/GenerateImage"));
  scope.AssignRequestId(request->request_id());
  absl::Status status = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const scheduler::Tenant* tenant, scope.Authenticate());
    RETURN_IF_ERROR(ValidateGenerateImageRequest(*request, services_.limits));
    ASSIGN_OR_RETURN(const ServedModel* model, ModelForTenant(services_, *tenant, request->model()));
    if (model->info.kind() != tern::v1::MODEL_KIND_DIFFUSION) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model \"", request->model(), "\" is a language model; GenerateImage needs a diffusion model"));
    }
    return absl::UnavailableError(
        absl::StrCat("model \"", request->model(), "\" has no diffusion engine attached in this ternd"));
  }();
  return new FinishedWriter<tern::v1::GenerateImageResponse>(ToGrpcStatus(scope.Finish(status)));
}

}  // namespace tern::server
