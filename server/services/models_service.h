// tern.v1.Models: ListModels and GetModelInfo from the ModelRegistry.
#pragma once

#include "server/front/service_context.h"
#include "tern/v1/models.grpc.pb.h"

namespace tern::server {

class ModelsService final : public tern::v1::Models::CallbackService {
 public:
  explicit ModelsService(const ServiceContext& services) : services_(services) {}

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const tern::v1::ListModelsRequest* request,
                                       tern::v1::ListModelsResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const tern::v1::GetModelInfoRequest* request,
                                         tern::v1::ModelInfo* response) override;

 private:
  const ServiceContext& services_;
};

}  // namespace tern::server
