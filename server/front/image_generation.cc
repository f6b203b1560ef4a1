#include "server/front/image_generation.h"

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "server/front/generation.h"
#include "server/services/image_request.h"
#include "server/validation/request_validation.h"

namespace tern::server {

absl::StatusOr<PreparedImage> PrepareImage(CallScope& scope, const tern::v1::GenerateImageRequest& request) {
  scope.AssignRequestId(request.request_id());
  const scheduler::Tenant* tenant = nullptr;
  PreparedImage call;
  ASSIGN_OR_RETURN(call.model, Admit(scope, request.model(), &tenant));
  RETURN_IF_ERROR(ValidateGenerateImageRequest(request, scope.services().limits));
  if (call.model->diffusion == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("model: \"", request.model(), "\" is a language model; images need a diffusion model"));
  }
  ASSIGN_OR_RETURN(call.request, MakeDiffusionRequest(request, request.model(), *call.model->diffusion,
                                                      scope.request_id(), *tenant, scope.info().deadline));
  return call;
}

}  // namespace tern::server
