// GenerationStream: the engine's sink for one Generate or Chat call, whatever
// the transport. It turns each step's deltas into tern.v1.GenerateResponse
// messages, observes the request's metrics (time to first token, inter-token
// latency, end-to-end latency, queue/prefill/decode times, outcome, SoT) and
// hands the messages, one at a time and in order, to the transport's
// StreamConsumer: gRPC's write reactor (server/services/generate_reactor.h)
// or the OpenAI-compatible API's HTTP writer (server/openai/openai_api.cc).
//
// Two objects, because their lifetimes differ: the consumer belongs to the
// transport, the stream to the engine (a shared_ptr it drops after OnDone)
// and to the consumer. The stream holds the pending messages and a pointer
// to the consumer, which the consumer clears (Detach) when it goes away; all
// of it under one mutex (write_queue.h). The engine never waits on the
// client: messages queue here while a write is in flight.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "runtime/tokenizer/tokenizer.h"
#include "scheduler/engine.h"
#include "scheduler/programs/sot_program.h"
#include "server/front/write_queue.h"
#include "server/observability/request_metrics.h"
#include "tern/v1/llm.pb.h"

namespace tern::server {

// The transport's end of a stream. Both calls come with the stream's mutex
// held, from the engine's delivery thread or from whatever thread called OnWriteDone or
// Attach, so they must not block and must not call back into the stream
// from within: the consumer reports a finished write later, by calling
// GenerationStream::OnWriteDone from its own thread.
class StreamConsumer {
 public:
  virtual ~StreamConsumer() = default;
  // Sends `message`, which stays valid until the consumer calls
  // OnWriteDone. One write at a time.
  virtual void StartWrite(const tern::v1::GenerateResponse* message) = 0;
  // The end of the stream, after the last write completed: OK, or the error
  // the request ended with (messages queued but not yet written are dropped
  // after an error). Called once; the stream never calls the consumer again.
  virtual void Finish(const absl::Status& status) = 0;
};

// Who a stream's metrics are attributed to.
struct StreamObservation {
  RequestMetrics* metrics = nullptr;  // borrowed; outlives the stream; null: no metrics
  std::string model;
  std::string tenant;
  std::chrono::steady_clock::time_point arrival = std::chrono::steady_clock::now();
};

class GenerationStream final : public scheduler::RequestSink {
 public:
  // `sot`: the outcome a Skeleton-of-Thought program writes (null for a
  // plain request); read in OnDone for the last message and metrics.
  GenerationStream(std::string request_id, tern::v1::DecodingMode mode, const runtime::Tokenizer* tokenizer,
                   StreamObservation observation, std::shared_ptr<const scheduler::SotOutcome> sot = nullptr);

  // Engine side.
  void OnDeltas(const std::vector<scheduler::ChoiceDelta>& deltas) override;
  void OnDone(const absl::Status& status, const scheduler::RequestUsage& usage) override;

  // Consumer side. Attach once; OnWriteDone after each StartWrite (`ok`
  // false: the client is gone, nothing more is written); Detach when the
  // consumer goes away.
  void Attach(StreamConsumer* consumer) { writes_.Attach(consumer); }
  void OnWriteDone(bool ok) { writes_.OnWriteDone(ok); }
  void Detach() { writes_.Detach(); }
  absl::Status final_status() { return writes_.status(); }

 private:
  // Metrics of a chunk carrying `tokens` tokens, and of the request's end.
  void ObserveChunk(int tokens, const std::vector<scheduler::ChoiceDelta>& deltas);
  void ObserveDone(const absl::Status& status, const scheduler::RequestUsage& usage);
  void FillSotReport(tern::v1::GenerateResponse* last) const;

  const std::string request_id_;
  const tern::v1::DecodingMode mode_;
  const runtime::Tokenizer* tokenizer_;  // borrowed, may be null
  // Shared with the engine's program, which writes it on the engine thread
  // before OnDone is posted; read only in OnDone, on the delivery thread (the
  // post orders the write before the read).
  const std::shared_ptr<const scheduler::SotOutcome> sot_;
  // Touched only from the delivery thread (OnDeltas, OnDone).
  StreamObservation observation_;
  std::optional<std::chrono::steady_clock::time_point> first_token_, last_token_;
  std::string outcome_ = "stop";
  WriteQueue<tern::v1::GenerateResponse, StreamConsumer> writes_;
};

}  // namespace tern::server
