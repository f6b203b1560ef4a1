// The transport-neutral front of ternd's calls: what gRPC's tern.v1 services
// and the OpenAI-compatible HTTP API both do with a request, so that no rule
// exists twice. A transport turns its wire request into a tern.v1 request
// (the OpenAI API converts its JSON: server/openai/openai_request.h), then:
//
//   CallScope scope(services, info);           // call_scope.h: auth, id, metrics, log
//   auto call = PrepareChat(scope, request);   // auth, admission, validation, SoT, prompt, engine request
//   auto stream = StartGeneration(std::move(*call), consumer);  // submit; deltas -> consumer
//   ... consumer->Finish(status) -> scope.Finish(status) -> the transport's status
//
// Status codes are tern's (absl); status_mapping.h says what each becomes on
// HTTP, server/grpc/status_conversion.h on gRPC.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "scheduler/engine.h"
#include "scheduler/programs/sot_program.h"
#include "scheduler/tenant.h"
#include "server/front/call_scope.h"
#include "server/front/generation_stream.h"
#include "server/models/model_registry.h"
#include "tern/v1/llm.pb.h"
#include "tern/v1/models.pb.h"

namespace tern::server {

// Authenticates the call, then checks that `model_name` is served and the
// tenant may use it: UNAUTHENTICATED, NOT_FOUND (naming the served models),
// PERMISSION_DENIED. `tenant_out` (optional) gets the tenant.
absl::StatusOr<const ServedModel*> Admit(CallScope& scope, const std::string& model_name,
                                         const scheduler::Tenant** tenant_out = nullptr);
// Admit's second half, for a tenant already authenticated.
absl::StatusOr<const ServedModel*> ModelForTenant(const ServiceContext& services, const scheduler::Tenant& tenant,
                                                  const std::string& model_name);

// The models `tenant` may use, as ListModels and GET /v1/models list them.
std::vector<tern::v1::ModelInfo> ModelsVisibleTo(const ServiceContext& services, const scheduler::Tenant& tenant);
// One of them: INVALID_ARGUMENT for an empty name, NOT_FOUND when it is not
// served or not served to this tenant (GetModelInfo, GET /v1/models/{id}).
absl::StatusOr<const ServedModel*> FindModelVisibleTo(const ServiceContext& services,
                                                      const scheduler::Tenant& tenant, const std::string& name);

// A Generate or Chat call that passed every check, ready to submit.
struct PreparedGeneration {
  const ServedModel* model = nullptr;
  const scheduler::Tenant* tenant = nullptr;
  scheduler::EngineRequest request;
  // The Skeleton-of-Thought outcome when the call runs as a SoT program.
  std::shared_ptr<const scheduler::SotOutcome> sot;
};

// Assigns the request id, authenticates, admits, validates
// (server/validation), decides Skeleton-of-Thought (sot_call.h), builds the
// prompt's tokens (Chat: through the model's chat template) and the engine
// request (request_conversion.h) with the call's deadline.
absl::StatusOr<PreparedGeneration> PrepareGenerate(CallScope& scope, const tern::v1::GenerateRequest& request);
absl::StatusOr<PreparedGeneration> PrepareChat(CallScope& scope, const tern::v1::ChatRequest& request);

// The stream that will carry `call`'s output, observed into `metrics` (may
// be null). Made before StartGeneration so that the consumer holds it
// before any message can reach it.
std::shared_ptr<GenerationStream> NewGenerationStream(const PreparedGeneration& call, RequestMetrics* metrics);

// Submits `call` to its model's engine with `stream` as its sink and
// attaches `consumer`, which then gets the messages and the end. A Submit
// error (RESOURCE_EXHAUSTED for a full queue, UNAVAILABLE while draining,
// ...) ends the stream at once with that status and is observed as a
// rejected request. `consumer` must stay valid until its Finish was called
// or it called Detach. Returns whether the engine accepted the request: only
// then may the transport cancel it (by its scheduler::RequestKey), since a
// rejected call's id may name another request of the same tenant.
bool StartGeneration(PreparedGeneration call, const std::shared_ptr<GenerationStream>& stream,
                     StreamConsumer* consumer);

}  // namespace tern::server
