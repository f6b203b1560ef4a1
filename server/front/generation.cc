#include "server/front/generation.h"

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "server/front/request_conversion.h"
#include "server/front/sot_call.h"
#include "server/validation/request_validation.h"

namespace tern::server {

absl::StatusOr<const ServedModel*> Admit(CallScope& scope, const std::string& model_name,
                                         const scheduler::Tenant** tenant_out) {
  ASSIGN_OR_RETURN(const scheduler::Tenant* tenant, scope.Authenticate());
  if (tenant_out != nullptr) *tenant_out = tenant;
  return ModelForTenant(scope.services(), *tenant, model_name);
}

absl::StatusOr<const ServedModel*> ModelForTenant(const ServiceContext& services, const scheduler::Tenant& tenant,
                                                  const std::string& model_name) {
  ASSIGN_OR_RETURN(const ServedModel* model, services.models->Find(model_name));
  if (!tenant.MayUseModel(model_name)) {
    return absl::PermissionDeniedError(
        absl::StrCat("tenant \"", tenant.name, "\" may not use model \"", model_name, "\""));
  }
  return model;
}

std::vector<tern::v1::ModelInfo> ModelsVisibleTo(const ServiceContext& services, const scheduler::Tenant& tenant) {
  std::vector<tern::v1::ModelInfo> visible;
  for (auto& info : services.models->List()) {
    if (tenant.MayUseModel(info.name())) visible.push_back(std::move(info));
  }
  return visible;
}

absl::StatusOr<const ServedModel*> FindModelVisibleTo(const ServiceContext& services,
                                                      const scheduler::Tenant& tenant, const std::string& name) {
  if (name.empty()) return absl::InvalidArgumentError("name: is required");
  ASSIGN_OR_RETURN(const ServedModel* model, services.models->Find(name));
  if (!tenant.MayUseModel(name)) {
    return absl::NotFoundError("model \"" + name + "\" is not served to this tenant");
  }
  return model;
}

namespace {

absl::Status CheckGenerates(const ServedModel& model) {
  if (model.engine != nullptr) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("model \"", model.info.name(), "\" is not a language model with a generation engine"));
}

PreparedGeneration Assemble(CallScope& scope, const ServedModel* model, const scheduler::Tenant* tenant,
                            int32_t priority, std::vector<int32_t> prompt, const tern::v1::SamplingParams& sampling,
                            SotCall sot) {
  PreparedGeneration call;
  call.model = model;
  call.tenant = tenant;
  call.request = MakeEngineRequest(scope.request_id(), *tenant, priority, std::move(prompt),
                                   ToSamplingParams(sampling), scope.info().deadline);
  call.request.program = std::move(sot.program);
  call.sot = std::move(sot.outcome);
  return call;
}

}  // namespace

absl::StatusOr<PreparedGeneration> PrepareGenerate(CallScope& scope, const tern::v1::GenerateRequest& request) {
  scope.AssignRequestId(request.request_id());
  const scheduler::Tenant* tenant = nullptr;
  ASSIGN_OR_RETURN(const ServedModel* model, Admit(scope, request.model(), &tenant));
  RETURN_IF_ERROR(CheckGenerates(*model));
  RETURN_IF_ERROR(ValidateGenerateRequest(request, scope.services().limits));
  ASSIGN_OR_RETURN(SotCall sot,
                   MakeSotCall(*model, request.decoding_mode(), request.sot(), request.sampling().n(),
                               request.prompt_case() == tern::v1::GenerateRequest::kText ? request.text() : "", {}));
  ASSIGN_OR_RETURN(std::vector<int32_t> prompt, PromptTokens(request, *model));
  return Assemble(scope, model, tenant, request.priority(), std::move(prompt), request.sampling(), std::move(sot));
}

absl::StatusOr<PreparedGeneration> PrepareChat(CallScope& scope, const tern::v1::ChatRequest& request) {
  scope.AssignRequestId(request.request_id());
  const scheduler::Tenant* tenant = nullptr;
  ASSIGN_OR_RETURN(const ServedModel* model, Admit(scope, request.model(), &tenant));
  RETURN_IF_ERROR(CheckGenerates(*model));
  RETURN_IF_ERROR(ValidateChatRequest(request, scope.services().limits));
  ASSIGN_OR_RETURN(std::vector<int32_t> prompt, ChatPromptTokens(request, *model));
  // The question is the last message when it is the user's.
  const tern::v1::ChatMessage& last = request.messages(request.messages_size() - 1);
  std::vector<runtime::ChatMessage> history;
  for (int i = 0; i + 1 < request.messages_size(); ++i) {
    history.push_back({request.messages(i).role(), request.messages(i).content()});
  }
  ASSIGN_OR_RETURN(SotCall sot, MakeSotCall(*model, request.decoding_mode(), request.sot(), request.sampling().n(),
                                            last.role() == "user" ? last.content() : "", std::move(history)));
  return Assemble(scope, model, tenant, request.priority(), std::move(prompt), request.sampling(), std::move(sot));
}

std::shared_ptr<GenerationStream> NewGenerationStream(const PreparedGeneration& call, RequestMetrics* metrics) {
  StreamObservation observation{metrics, call.model->info.name(), call.tenant->name};
  return std::make_shared<GenerationStream>(call.request.request_id, tern::v1::DECODING_MODE_NORMAL,
                                            call.model->tokenizer.get(), std::move(observation), call.sot);
}

bool StartGeneration(PreparedGeneration call, const std::shared_ptr<GenerationStream>& stream,
                     StreamConsumer* consumer) {
  const absl::Status submitted = call.model->engine->Submit(std::move(call.request), stream);
  if (!submitted.ok()) stream->OnDone(submitted, {});
  stream->Attach(consumer);
  return submitted.ok();
}

}  // namespace tern::server
