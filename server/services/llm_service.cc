#include "server/services/llm_service.h"

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"
#include "server/front/call_scope.h"
#include "server/front/generation.h"
#include "server/grpc/call_info.h"
#include "server/grpc/status_conversion.h"
#include "server/services/finished_writer.h"
#include "server/services/generate_reactor.h"

namespace tern::server {
namespace {

absl::StatusOr<const runtime::Tokenizer*> TokenizerOf(const ServedModel& model) {
  if (model.tokenizer == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model \"", model.info.name(), "\" has no tokenizer (its directory holds no tokenizer.json or "
        "tokenizer.model); send token ids"));
  }
  return model.tokenizer.get();
}

grpc::ServerUnaryReactor* FinishUnary(grpc::CallbackServerContext* context, CallScope& scope,
                                      const absl::Status& status) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(scope.Finish(status)));
  return reactor;
}

}  // namespace

grpc::ServerWriteReactor<tern::v1::GenerateResponse>* LlmService::Generate(
    grpc::CallbackServerContext* context, const tern::v1::GenerateRequest* request) {
  CallScope scope(services_, GrpcCallInfo(*context, "/tern.v1.Llm/Generate"));
  absl::StatusOr<PreparedGeneration> call = PrepareGenerate(scope, *request);
  if (!call.ok()) {
    return new FinishedWriter<tern::v1::GenerateResponse>(ToGrpcStatus(scope.Finish(call.status())));
  }
  return GenerateReactor::Start(std::move(scope), *std::move(call));
}

grpc::ServerWriteReactor<tern::v1::GenerateResponse>* LlmService::Chat(
    grpc::CallbackServerContext* context, const tern::v1::ChatRequest* request) {
  CallScope scope(services_, GrpcCallInfo(*context, "/tern.v1.Llm/Chat"));
  absl::StatusOr<PreparedGeneration> call = PrepareChat(scope, *request);
  if (!call.ok()) {
    return new FinishedWriter<tern::v1::GenerateResponse>(ToGrpcStatus(scope.Finish(call.status())));
  }
  return GenerateReactor::Start(std::move(scope), *std::move(call));
}

grpc::ServerUnaryReactor* LlmService::Tokenize(grpc::CallbackServerContext* context,
                                               const tern::v1::TokenizeRequest* request,
                                               tern::v1::TokenizeResponse* response) {
  CallScope scope(services_, GrpcCallInfo(*context, "/tern.v1.Llm/Tokenize"));
  scope.AssignRequestId("");
  absl::Status status = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const ServedModel* model, Admit(scope, request->model()));
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
  CallScope scope(services_, GrpcCallInfo(*context, "/tern.v1.Llm/Detokenize"));
  scope.AssignRequestId("");
  absl::Status status = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const ServedModel* model, Admit(scope, request->model()));
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
