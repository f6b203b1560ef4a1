// The server-streaming side of Generate and Chat: a gRPC write reactor fed by
// an Engine's RequestSink.
//
// Two objects, because their lifetimes differ: the reactor belongs to gRPC
// (deleted in OnDone), the sink state belongs to the engine (a shared_ptr it
// drops after OnDone). The state holds the pending responses and a pointer
// to the reactor that the reactor clears when it goes away; all of it under
// one mutex. Writes go out one at a time, in order; the engine never waits
// on the client.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/support/server_callback.h"
#include "runtime/tokenizer/tokenizer.h"
#include "scheduler/engine.h"
#include "scheduler/programs/sot_program.h"
#include "server/observability/request_metrics.h"
#include "server/services/rpc_scope.h"
#include "tern/v1/llm.pb.h"

namespace tern::server {

class GenerateReactor;

// Who a stream's metrics are attributed to.
struct StreamObservation {
  RequestMetrics* metrics = nullptr;  // borrowed; outlives the stream
  std::string model;
  std::string tenant;
  std::chrono::steady_clock::time_point arrival = std::chrono::steady_clock::now();
};

// The engine's view of one streaming call.
class GenerateStreamState final : public scheduler::RequestSink {
 public:
  // `sot`: the outcome a Skeleton-of-Thought program writes (null for a
  // plain request); read in OnDone for the last message and metrics.
  GenerateStreamState(std::string request_id, tern::v1::DecodingMode mode, const runtime::Tokenizer* tokenizer,
                      StreamObservation observation, std::shared_ptr<const scheduler::SotOutcome> sot = nullptr);

  void OnDeltas(const std::vector<scheduler::ChoiceDelta>& deltas) override;
  void OnDone(const absl::Status& status, const scheduler::RequestUsage& usage) override;

  // Reactor side.
  void Attach(GenerateReactor* reactor);
  void OnWriteDone(bool ok);
  void Detach();
  absl::Status final_status();

 private:
  void PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Metrics of a chunk carrying `tokens` tokens, and of the request's end.
  void ObserveChunk(int tokens, const std::vector<scheduler::ChoiceDelta>& deltas);
  void ObserveDone(const absl::Status& status, const scheduler::RequestUsage& usage);
  void FillSotReport(tern::v1::GenerateResponse* last) const;

  const std::string request_id_;
  const tern::v1::DecodingMode mode_;
  const runtime::Tokenizer* tokenizer_;  // borrowed, may be null
  // Shared with the engine's program, which writes it on the engine thread
  // before OnDone; read only in OnDone (same thread).
  const std::shared_ptr<const scheduler::SotOutcome> sot_;
  // Touched only from the engine thread (OnDeltas, OnDone).
  StreamObservation observation_;
  std::optional<std::chrono::steady_clock::time_point> first_token_, last_token_;
  std::string outcome_ = "stop";
  absl::Mutex mu_;
  GenerateReactor* reactor_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::deque<tern::v1::GenerateResponse> pending_ ABSL_GUARDED_BY(mu_);
  tern::v1::GenerateResponse in_flight_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

class GenerateReactor final : public grpc::ServerWriteReactor<tern::v1::GenerateResponse> {
 public:
  // Submits `request` to `engine` and streams its output. On a Submit error
  // the call ends at once with that status.
  static GenerateReactor* Start(RpcScope scope, scheduler::Engine* engine, scheduler::EngineRequest request,
                                tern::v1::DecodingMode mode, const runtime::Tokenizer* tokenizer,
                                StreamObservation observation,
                                std::shared_ptr<const scheduler::SotOutcome> sot = nullptr);

  void OnWriteDone(bool ok) override { state_->OnWriteDone(ok); }
  void OnCancel() override;
  void OnDone() override;

 private:
  GenerateReactor(RpcScope scope, scheduler::Engine* engine, std::string request_id,
                  std::shared_ptr<GenerateStreamState> state);
  RpcScope scope_;
  scheduler::Engine* engine_;
  std::string request_id_;
  std::shared_ptr<GenerateStreamState> state_;
};

}  // namespace tern::server
