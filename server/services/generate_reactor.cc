#include "server/services/generate_reactor.h"

#include "server/grpc/status_conversion.h"

namespace tern::server {

GenerateReactor::GenerateReactor(CallScope scope, scheduler::Engine* engine, scheduler::RequestKey key)
    : scope_(std::move(scope)), engine_(engine), key_(std::move(key)) {}

GenerateReactor* GenerateReactor::Start(CallScope scope, PreparedGeneration call) {
  scheduler::Engine* engine = call.model->engine.get();
  auto* reactor =
      new GenerateReactor(std::move(scope), engine, {call.request.tenant->name, call.request.request_id});
  reactor->stream_ = NewGenerationStream(call, &reactor->scope_.services().metrics->requests());
  if (StartGeneration(std::move(call), reactor->stream_, reactor)) {
    reactor->accepted_ = true;
    if (reactor->cancelled_) engine->Cancel(reactor->key_);
  }
  return reactor;
}

void GenerateReactor::StartWrite(const tern::v1::GenerateResponse* message) {
  grpc::ServerWriteReactor<tern::v1::GenerateResponse>::StartWrite(message);
}

void GenerateReactor::Finish(const absl::Status& status) {
  grpc::ServerWriteReactor<tern::v1::GenerateResponse>::Finish(ToGrpcStatus(status));
}

void GenerateReactor::OnCancel() {
  cancelled_ = true;
  if (accepted_) engine_->Cancel(key_);
}

void GenerateReactor::OnDone() {
  stream_->Detach();
  scope_.Finish(stream_->final_status()).IgnoreError();
  delete this;
}

}  // namespace tern::server
