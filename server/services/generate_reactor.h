// The gRPC end of a Generate or Chat stream: a server write reactor that is
// the GenerationStream's consumer (server/front/generation_stream.h). It
// writes each message as a GenerateResponse, ends the call with the
// stream's status, cancels the request in the engine when the client
// cancels or its deadline passes, and finishes the call's CallScope.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "grpcpp/support/server_callback.h"
#include "scheduler/engine.h"
#include "server/front/call_scope.h"
#include "server/front/generation.h"
#include "tern/v1/llm.pb.h"

namespace tern::server {

class GenerateReactor final : public grpc::ServerWriteReactor<tern::v1::GenerateResponse>, private StreamConsumer {
 public:
  // Submits `call` (StartGeneration) and streams its output. On a Submit
  // error the call ends at once with that status.
  static GenerateReactor* Start(CallScope scope, PreparedGeneration call);

  void OnWriteDone(bool ok) override { stream_->OnWriteDone(ok); }
  void OnCancel() override;
  void OnDone() override;

 private:
  GenerateReactor(CallScope scope, scheduler::Engine* engine, scheduler::RequestKey key);
  // StreamConsumer.
  void StartWrite(const tern::v1::GenerateResponse* message) override;
  void Finish(const absl::Status& status) override;

  CallScope scope_;
  scheduler::Engine* engine_;
  const scheduler::RequestKey key_;  // the tenant's name and the request id
  // A cancel goes to the engine only once it took the request; one that
  // came before is sent when Submit returns.
  std::atomic<bool> accepted_{false};
  std::atomic<bool> cancelled_{false};
  std::shared_ptr<GenerationStream> stream_;
};

}  // namespace tern::server
