#include "server/services/llm_service.h"

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "server/services/finished_writer.h"
#include "server/services/generate_stream.h"
#include "server/services/request_conversion.h"
#include "server/services/rpc_scope.h"
#include "server/services/sot_call.h"

namespace tern::server {
namespace {

// Authenticates, then checks the model exists and the tenant may use it.
absl::StatusOr<const ServedModel*> Admit(RpcScope& scope, const ServiceContext& services,
                                         const std::string& model_name, const scheduler::Tenant** tenant_out = nullptr) {
  ASSIGN_OR_RETURN(const scheduler::Tenant* tenant, scope.Authenticate());
  if (tenant_out != nullptr) *tenant_out = tenant;
  ASSIGN_OR_RETURN(const ServedModel* model, services.models->Find(model_name));
  if (!tenant->MayUseModel(model_name)) {
    return absl::PermissionDeniedError(
        absl::StrCat("tenant \"", tenant->name, "\" may not use model \"", model_name, "\""));
  }
  return model;
}

absl::StatusOr<const runtime::Tokenizer*> TokenizerOf(const ServedModel& model) {
  if (model.tokenizer == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model \"", model.info.name(), "\" has no tokenizer (its directory holds no tokenizer.json or "
        "tokenizer.model); send token ids"));
  }
  return model.tokenizer.get();
}

grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* context, RpcScope& scope,
                                      const absl::Status& status) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(scope.Finish(status));
  return reactor;
}

}  // namespace

grpc::ServerWriteReactor<tern::v1::GenerateResponse>* LlmService::Generate(
    grpc::CallbackServerContext* context, const tern::v1::GenerateRequest* request) {
  RpcScope scope(services_, context, "/tern.v1.Llm/Generate");
  const std::string request_id = scope.AssignRequestId(request->request_id());
  const scheduler::Tenant* tenant = nullptr;
  const ServedModel* model = nullptr;
  SotCall sot;
  absl::StatusOr<std::vector<int32_t>> prompt = [&]() -> absl::StatusOr<std::vector<int32_t>> {
    ASSIGN_OR_RETURN(model, Admit(scope, services_, request->model(), &tenant));
    RETURN_IF_ERROR(ValidateGenerateRequest(*request, services_.limits));
    ASSIGN_OR_RETURN(sot, MakeSotCall(*model, request->decoding_mode(), request->sot(), request->sampling().n(),
                                      request->prompt_case() == tern::v1::GenerateRequest::kText ? request->text() : "",
                                      {}));
    return PromptTokens(*request, *model);
  }();
  if (!prompt.ok()) return new FinishedWriter<tern::v1::GenerateResponse>(scope.Finish(prompt.status()));
  scheduler::EngineRequest engine_request = MakeEngineRequest(request_id, *tenant, request->priority(),
                                                              std::move(*prompt), ToSamplingParams(request->sampling()),
                                                              *context);
  engine_request.program = std::move(sot.program);
  return GenerateReactor::Start(std::move(scope), model->engine.get(), std::move(engine_request),
                                tern::v1::DECODING_MODE_NORMAL, model->tokenizer.get(),
                                {&services_.metrics->requests(), model->info.name(), tenant->name},
                                std::move(sot.outcome));
}

grpc::ServerWriteReactor<tern::v1::GenerateResponse>* LlmService::Chat(
    grpc::CallbackServerContext* context, const tern::v1::ChatRequest* request) {
  RpcScope scope(services_, context, "/tern.v1.Llm/Chat");
  const std::string request_id = scope.AssignRequestId(request->request_id());
  const scheduler::Tenant* tenant = nullptr;
  const ServedModel* model = nullptr;
  SotCall sot;
  absl::StatusOr<std::vector<int32_t>> prompt = [&]() -> absl::StatusOr<std::vector<int32_t>> {
    ASSIGN_OR_RETURN(model, Admit(scope, services_, request->model(), &tenant));
    RETURN_IF_ERROR(ValidateChatRequest(*request, services_.limits));
    ASSIGN_OR_RETURN(std::vector<int32_t> tokens, ChatPromptTokens(*request, *model));
    // The question is the last message when it is the user's.
    const tern::v1::ChatMessage& last = request->messages(request->messages_size() - 1);
    std::vector<runtime::ChatMessage> history;
    for (int i = 0; i + 1 < request->messages_size(); ++i) {
      history.push_back({request->messages(i).role(), request->messages(i).content()});
    }
    ASSIGN_OR_RETURN(sot, MakeSotCall(*model, request->decoding_mode(), request->sot(), request->sampling().n(),
                                      last.role() == "user" ? last.content() : "", std::move(history)));
    return tokens;
  }();
  if (!prompt.ok()) return new FinishedWriter<tern::v1::GenerateResponse>(scope.Finish(prompt.status()));
  scheduler::EngineRequest engine_request = MakeEngineRequest(request_id, *tenant, request->priority(),
                                                              std::move(*prompt), ToSamplingParams(request->sampling()),
                                                              *context);
  engine_request.program = std::move(sot.program);
  return GenerateReactor::Start(std::move(scope), model->engine.get(), std::move(engine_request),
                                tern::v1::DECODING_MODE_NORMAL, model->tokenizer.get(),
                                {&services_.metrics->requests(), model->info.name(), tenant->name},
                                std::move(sot.outcome));
}

grpc::ServerUnaryReactor* LlmService::Tokenize(grpc::CallbackServerContext* context,
                                               const tern::v1::TokenizeRequest* request,
                                               tern::v1::TokenizeResponse* response) {
  RpcScope scope(services_, context, "/tern.v1.Llm/Tokenize");
  scope.AssignRequestId("");
  absl::Status status = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const ServedModel* model, Admit(scope, services_, request->model()));
    RETURN_IF_ERROR(ValidateTokenizeRequest(*request, services_.limits));
    ASSIGN_OR_RETURN(const runtime::Tokenizer* tokenizer, TokenizerOf(*model));
    const bool add_special = !request->has_add_special_tokens() || request->add_special_tokens();
    for (int32_t id : tokenizer->Encode(request->text(), add_special)) {
      response->add_ids(id);
      ASSIGN_OR_RETURN(std::string_view piece, tokenizer->IdToPiece(id));
      response->add_tokens(std::string(piece));
    }
    return absl::OkStatus();
  }();
  return FinishUnary(context, scope, status);
}

grpc::ServerUnaryReactor* LlmService::Detokenize(grpc::CallbackServerContext* context,
                                                 const tern::v1::DetokenizeRequest* request,
                                                 tern::v1::DetokenizeResponse* response) {
  RpcScope scope(services_, context, "/tern.v1.Llm/Detokenize");
  scope.AssignRequestId("");
  absl::Status status = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const ServedModel* model, Admit(scope, services_, request->model()));
    RETURN_IF_ERROR(ValidateDetokenizeRequest(*request, services_.limits));
    ASSIGN_OR_RETURN(const runtime::Tokenizer* tokenizer, TokenizerOf(*model));
    const std::vector<int32_t> ids(request->ids().begin(), request->ids().end());
    ASSIGN_OR_RETURN(std::string text, tokenizer->Decode(ids, request->skip_special_tokens()));
    response->set_text(std::move(text));
    return absl::OkStatus();
  }();
  return FinishUnary(context, scope, status);
}

}  // namespace tern::server
