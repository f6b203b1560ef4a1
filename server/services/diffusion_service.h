// tern.v1.Diffusion over the gRPC callback API. Requests are authenticated,
// validated and resolved to a model; a model that is not a diffusion model is
// INVALID_ARGUMENT, an unknown one NOT_FOUND.
#pragma once

#include "server/front/service_context.h"
#include "tern/v1/diffusion.grpc.pb.h"

namespace tern::server {

class DiffusionService final : public tern::v1::Diffusion::CallbackService {
 public:
  explicit DiffusionService(const ServiceContext& services) : services_(services) {}

  grpc::ServerWriteReactor<tern::v1::GenerateImageResponse>* GenerateImage(
      grpc::CallbackServerContext* context, const tern::v1::GenerateImageRequest* request) override;

 private:
  const ServiceContext& services_;
};

}  // namespace tern::server
