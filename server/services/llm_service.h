// tern.v1.Llm over the gRPC callback API: a thin transport over the front
// (server/front/generation.h), which holds every rule.
//
// Every call: authenticate, validate, resolve the model, check the tenant may
// use it. Generate and Chat then tokenize (Chat renders the model's chat
// template first) and submit to the model's Engine, streaming its output
// through a GenerateReactor. Tokenize and Detokenize need only the tokenizer.
#pragma once

#include "server/front/service_context.h"
#include "tern/v1/llm.grpc.pb.h"

namespace tern::server {

class LlmService final : public tern::v1::Llm::CallbackService {
 public:
  explicit LlmService(const ServiceContext& services) : services_(services) {}

  grpc::ServerWriteReactor<tern::v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context, const tern::v1::GenerateRequest* request) override;
  grpc::ServerWriteReactor<tern::v1::GenerateResponse>* Chat(
      grpc::CallbackServerContext* context, const tern::v1::ChatRequest* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const tern::v1::TokenizeRequest* request,
                                     tern::v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* Detokenize(grpc::CallbackServerContext* context,
                                       const tern::v1::DetokenizeRequest* request,
                                       tern::v1::DetokenizeResponse* response) override;

 private:
  const ServiceContext& services_;
};

}  // namespace tern::server
