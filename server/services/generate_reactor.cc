#include "server/services/generate_reactor.h"

#include "server/grpc/status_conversion.h"

namespace tern::server {

GenerateReactor::GenerateReactor(CallScope scope, scheduler::Engine* engine, std::string request_id)
    : scope_(std::move(scope)), engine_(engine), request_id_(std::move(request_id)) {}

GenerateReactor* GenerateReactor::Start(CallScope scope, PreparedGeneration call) {
  scheduler::Engine* engine = call.model->engine.get();
  auto* reactor = new GenerateReactor(std::move(scope), engine, call.request.request_id);
  reactor->stream_ = NewGenerationStream(call, &reactor->scope_.services().metrics->requests());
  StartGeneration(std::move(call), reactor->stream_, reactor);
  return reactor;
}

void GenerateReactor::StartWrite(const tern::v1::GenerateResponse* message) {
  grpc::ServerWriteReactor<tern::v1::GenerateResponse>::StartWrite(message);
}

void GenerateReactor::Finish(const absl::Status& status) {
  grpc::ServerWriteReactor<tern::v1::GenerateResponse>::Finish(ToGrpcStatus(status));
}

void GenerateReactor::OnCancel() { engine_->Cancel(request_id_); }

void GenerateReactor::OnDone() {
  stream_->Detach();
  scope_.Finish(stream_->final_status()).IgnoreError();
  delete this;
}

}  // namespace tern::server
