// The transport-neutral front of an image request: what gRPC's
// tern.v1.Diffusion/GenerateImage and the OpenAI-compatible
// POST /v1/images/generations both do with it, so that no rule exists twice.
// A transport turns its wire request into a tern.v1.GenerateImageRequest (the
// OpenAI API converts its JSON: server/openai/openai_images.h), then:
//
//   CallScope scope(services, info);            // call_scope.h: auth, id, metrics, log
//   auto call = PrepareImage(scope, request);   // auth, admission, validation, the model's checks
//   auto stream = std::make_shared<ImageStream>(...);   // services/image_stream.h
//   SubmitImages(engine, std::move(call->request), stream); stream->Attach(consumer);
//   ... consumer->Finish(status) -> scope.Finish(status) -> the transport's status
#pragma once

#include "absl/status/statusor.h"
#include "scheduler/diffusion_engine.h"
#include "server/front/call_scope.h"
#include "server/models/model_registry.h"
#include "tern/v1/diffusion.pb.h"

namespace tern::server {

// An image request that passed every check, ready to submit to
// model->diffusion->engine.
struct PreparedImage {
  const ServedModel* model = nullptr;
  scheduler::DiffusionRequest request;
};

// Assigns the request id, authenticates and admits (UNAUTHENTICATED,
// NOT_FOUND, PERMISSION_DENIED), runs the model-free checks
// (server/validation), refuses a language model (INVALID_ARGUMENT naming
// `model`), and converts with the model's own checks
// (services/image_request.h: classes, size, steps, guidance, batch),
// with the call's deadline.
absl::StatusOr<PreparedImage> PrepareImage(CallScope& scope, const tern::v1::GenerateImageRequest& request);

}  // namespace tern::server
