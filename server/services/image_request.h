// A GenerateImageRequest, checked against the model that will run it and
// turned into the diffusion engine's request. ValidateGenerateImageRequest
// (server/validation) has already done the model-free checks (ranges of
// steps, guidance, batch, sampler enum, sizes); this adds what depends on
// the model: its classes, its image size, its timesteps, its null class and
// its batch. Every error is INVALID_ARGUMENT naming the field.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "scheduler/diffusion_engine.h"
#include "scheduler/tenant.h"
#include "server/models/diffusion_setup.h"
#include "tern/v1/diffusion.pb.h"

namespace tern::server {

// Zero and unset fields take the model's defaults (ServedDiffusion); an
// unset seed is drawn at random (the response reports each image's seed).
// The tenant's priority is added to the request's.
absl::StatusOr<scheduler::DiffusionRequest> MakeDiffusionRequest(const tern::v1::GenerateImageRequest& request,
                                                                 const std::string& model_name,
                                                                 const ServedDiffusion& model,
                                                                 const std::string& request_id,
                                                                 const scheduler::Tenant& tenant, absl::Time deadline);

}  // namespace tern::server
