// tern.v1.Diffusion over the gRPC callback API. GenerateImage authenticates,
// validates (model-free checks in server/validation, then the model's own in
// image_request.h), submits to the model's DiffusionEngine and streams
// progress events, one PNG per image, and a last message with done = true
// (image_stream.h). A language model is INVALID_ARGUMENT, an unknown one
// NOT_FOUND, a full queue RESOURCE_EXHAUSTED.
#pragma once

#include "server/front/service_context.h"
#include "tern/v1/diffusion.grpc.pb.h"

namespace tern::server {

class DiffusionService final : public tern::v1::Diffusion::CallbackService {
 public:
  // Registers the diffusion engines' collector with services.metrics:
  // construct during setup, before scraping starts.
  explicit DiffusionService(const ServiceContext& services);

  grpc::ServerWriteReactor<tern::v1::GenerateImageResponse>* GenerateImage(
      grpc::CallbackServerContext* context, const tern::v1::GenerateImageRequest* request) override;

 private:
  const ServiceContext& services_;
};

}  // namespace tern::server
