// One Generate stream driven by gRPC's callback API, timing every chunk.
//
// Threads: Start() and Cancel() are called by the owner; OnReadDone and
// OnDone run on gRPC's callback threads, one at a time for a given call.
// OnDone calls sink->OnCallDone(this) as its very last action (load_call.h).
#pragma once

#include <memory>
#include <string>

#include "grpcpp/grpcpp.h"
#include "loadtest/load_call.h"
#include "loadtest/request_metrics.h"
#include "tern/v1/llm.grpc.pb.h"

namespace tern::loadtest {

class GenerateCall : public LoadCall, public grpc::ClientReadReactor<tern::v1::GenerateResponse> {
 public:
  // `trace` arrives with index, tenant, max_tokens and scheduled set. An
  // empty `api_key` sends no authorization header. `stub` outlives the call.
  GenerateCall(RequestTrace trace, tern::v1::GenerateRequest request, const std::string& api_key,
               std::chrono::milliseconds timeout, tern::v1::Llm::StubInterface* stub, CallSink* sink);

  void Start() override;
  void Cancel() override { context_.TryCancel(); }

 private:
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

  grpc::ClientContext context_;
  tern::v1::GenerateRequest request_;
  tern::v1::GenerateResponse response_;
  std::chrono::milliseconds timeout_;
  tern::v1::Llm::StubInterface* stub_;
  CallSink* sink_;
};

}  // namespace tern::loadtest
