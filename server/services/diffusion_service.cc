#include "server/services/diffusion_service.h"

#include "server/front/call_scope.h"
#include "server/front/image_generation.h"
#include "server/grpc/call_info.h"
#include "server/grpc/status_conversion.h"
#include "server/observability/diffusion_metrics.h"
#include "server/services/finished_writer.h"
#include "server/services/image_stream.h"

namespace tern::server {

DiffusionService::DiffusionService(const ServiceContext& services) : services_(services) {
  if (services.metrics != nullptr) {
    services.metrics->AddCollectable(std::make_shared<DiffusionCollector>(services.models));
  }
}

grpc::ServerWriteReactor<tern::v1::GenerateImageResponse>* DiffusionService::GenerateImage(
    grpc::CallbackServerContext* context, const tern::v1::GenerateImageRequest* request) {
  CallScope scope(services_, GrpcCallInfo(*context, "/tern.v1.Diffusion/GenerateImage"));
  absl::StatusOr<PreparedImage> prepared = PrepareImage(scope, *request);
  if (!prepared.ok()) {
    return new FinishedWriter<tern::v1::GenerateImageResponse>(ToGrpcStatus(scope.Finish(prepared.status())));
  }
  return ImageReactor::Start(std::move(scope), prepared->model->diffusion->engine.get(),
                             std::move(prepared->request), request->model(),
                             services_.metrics != nullptr ? &services_.metrics->diffusion() : nullptr);
}

}  // namespace tern::server
