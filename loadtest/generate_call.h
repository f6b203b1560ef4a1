// One Generate stream driven by gRPC's callback API, timing every chunk.
//
// Threads: Start() and Cancel() are called by the owner; OnReadDone and
// OnDone run on gRPC's callback threads, one at a time for a given call.
// OnDone calls sink->OnCallDone(this) as its very last action; from then on
// gRPC and this object's callbacks never touch it again, so the owner may
// read the trace and delete the call once the sink has it (the sink's own
// mutex orders the trace's writes before the owner's reads).
#pragma once

#include <memory>
#include <string>

#include "grpcpp/grpcpp.h"
#include "loadtest/request_metrics.h"
#include "tern/v1/llm.grpc.pb.h"

namespace tern::loadtest {

class GenerateCall;

// Told when a call has finished. Outlives every call that reports to it.
class CallSink {
 public:
  virtual ~CallSink() = default;
  virtual void OnCallDone(GenerateCall* call) = 0;
};

class GenerateCall : public grpc::ClientReadReactor<tern::v1::GenerateResponse> {
 public:
  // `trace` arrives with index, tenant, max_tokens and scheduled set. An
  // empty `api_key` sends no authorization header.
  GenerateCall(RequestTrace trace, tern::v1::GenerateRequest request, const std::string& api_key,
               std::chrono::milliseconds timeout, CallSink* sink);

  // Stamps trace.sent and starts the stream on `stub`. Once.
  void Start(tern::v1::Llm::StubInterface* stub);
  // Asks gRPC to cancel; OnDone still follows. Any time before deletion.
  void Cancel() { context_.TryCancel(); }

  // Valid after the sink was told.
  RequestTrace& trace() { return trace_; }

 private:
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

  grpc::ClientContext context_;
  tern::v1::GenerateRequest request_;
  tern::v1::GenerateResponse response_;
  RequestTrace trace_;
  std::chrono::milliseconds timeout_;
  CallSink* sink_;
};

}  // namespace tern::loadtest
