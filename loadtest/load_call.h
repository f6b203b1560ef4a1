// One request of the load on the wire, whatever the API: tern.v1 gRPC
// (generate_call.h) or an OpenAI-compatible HTTP server (openai_call.h).
//
// Threads: Start() and Cancel() are called by the dispatcher; the call's
// transport runs its callbacks on its own threads. As its very last action a
// call hands itself to its sink (OnCallDone); from then on nothing touches it
// but its owner, which may read the trace and delete it (the sink's own mutex
// orders the trace's writes before the owner's reads).
#pragma once

#include "loadtest/request_metrics.h"

namespace tern::loadtest {

class LoadCall;

// Told when a call has finished. Outlives every call that reports to it.
class CallSink {
 public:
  virtual ~CallSink() = default;
  virtual void OnCallDone(LoadCall* call) = 0;
};

class LoadCall {
 public:
  virtual ~LoadCall() = default;
  // Stamps trace.sent and starts the request. Once.
  virtual void Start() = 0;
  // Asks the transport to cancel; the sink is still told. Any time before
  // deletion, even after the call has finished.
  virtual void Cancel() = 0;
  // Valid after the sink was told.
  RequestTrace& trace() { return trace_; }

 protected:
  explicit LoadCall(RequestTrace trace) : trace_(std::move(trace)) {}
  RequestTrace trace_;
};

}  // namespace tern::loadtest
