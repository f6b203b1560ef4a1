// One image request's way out, whatever the transport: ImageStream is the
// diffusion engine's sink, an ImageConsumer the transport's end of it: gRPC's
// ImageReactor (below) or the OpenAI-compatible API's HTTP writer
// (server/openai/openai_api.cc).
//
// The sink runs on the engine's delivery thread (scheduler/delivery_thread.h),
// never on the engine thread: there it builds each GenerateImageResponse,
// encodes the images as PNG (png_codec.h), records the request's metrics,
// and hands the messages to the consumer, one at a time, in order; the
// engine never waits on the client. Two objects because their lifetimes
// differ: the transport ends its consumer (gRPC deletes the reactor in
// OnDone); the engine drops the sink after OnDone. The stream points at the
// consumer under its mutex (server/front/write_queue.h) until Detach.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "grpcpp/support/server_callback.h"
#include "scheduler/diffusion_engine.h"
#include "server/front/call_scope.h"
#include "server/front/write_queue.h"
#include "server/observability/diffusion_metrics.h"
#include "tern/v1/diffusion.pb.h"

namespace tern::server {

// The transport's end of an ImageStream. Both calls come with the stream's
// mutex held, from the delivery thread or from whatever thread called
// OnWriteDone or Attach, so they must not block and must not call back into
// the stream from within: the consumer reports a finished write later, by
// calling ImageStream::OnWriteDone from its own thread.
class ImageConsumer {
 public:
  virtual ~ImageConsumer() = default;
  // Sends `message`, which stays valid until the consumer calls
  // OnWriteDone. One write at a time.
  virtual void StartWrite(const tern::v1::GenerateImageResponse* message) = 0;
  // The end, after the last write completed: OK (the last message carried
  // done = true), or the error the request ended with. Called once.
  virtual void Finish(const absl::Status& status) = 0;
};

class ImageStream final : public scheduler::DiffusionSink {
 public:
  // `metrics` may be null; it outlives the stream.
  ImageStream(std::string request_id, std::string model, std::string tenant, DiffusionMetrics* metrics);

  void OnProgress(const scheduler::DiffusionProgress& progress) override;
  void OnImages(std::vector<runtime::DitImage> images) override;
  void OnDone(const absl::Status& status, const scheduler::DiffusionUsage& usage) override;

  // A request the engine refused at Submit: counted as rejected, and the
  // consumer is finished with `status` once attached.
  void OnRejected(const absl::Status& status);

  // Consumer side. Attach once; OnWriteDone after each StartWrite (`ok`
  // false: the client is gone, nothing more is written); Detach when the
  // consumer goes away.
  void Attach(ImageConsumer* consumer) { writes_.Attach(consumer); }
  void OnWriteDone(bool ok) { writes_.OnWriteDone(ok); }
  void Detach() { writes_.Detach(); }

 private:
  const std::string request_id_;
  const std::string model_;
  const std::string tenant_;
  DiffusionMetrics* const metrics_;
  const absl::Time arrival_ = absl::Now();
  // Delivery thread only: an image that could not be encoded fails the call.
  absl::Status encode_error_;

  WriteQueue<tern::v1::GenerateImageResponse, ImageConsumer> writes_;
};

// Submits `request` to `engine` with `stream` as its sink. A Submit error
// (RESOURCE_EXHAUSTED for a full queue, UNAVAILABLE while draining) ends the
// stream at once with it. Returns whether the engine took the request: only
// then may the transport cancel it (by its scheduler::RequestKey). The
// transport attaches its consumer afterwards, so that nothing reaches the
// consumer before it knows the answer.
bool SubmitImages(scheduler::DiffusionEngine* engine, scheduler::DiffusionRequest request,
                  const std::shared_ptr<ImageStream>& stream);

// The gRPC end: a server write reactor that writes each message, ends the
// call with the stream's status, cancels the request in the engine when the
// client cancels or its deadline passes, and finishes the call's CallScope.
class ImageReactor final : public grpc::ServerWriteReactor<tern::v1::GenerateImageResponse>,
                           private ImageConsumer {
 public:
  // Submits `request` to `engine` with a new ImageStream as its sink and
  // streams its events; on a Submit error the call ends at once with it.
  static ImageReactor* Start(CallScope scope, scheduler::DiffusionEngine* engine, scheduler::DiffusionRequest request,
                             const std::string& model, DiffusionMetrics* metrics);

  void OnWriteDone(bool ok) override { stream_->OnWriteDone(ok); }
  void OnCancel() override {
    cancelled_ = true;
    if (accepted_) engine_->Cancel(key_);
  }
  void OnDone() override;

 private:
  ImageReactor(CallScope scope, scheduler::DiffusionEngine* engine, scheduler::RequestKey key)
      : scope_(std::move(scope)), engine_(engine), key_(std::move(key)) {}
  // ImageConsumer, called by the stream under its mutex.
  void StartWrite(const tern::v1::GenerateImageResponse* message) override;
  void Finish(const absl::Status& status) override;

  CallScope scope_;
  scheduler::DiffusionEngine* engine_;
  const scheduler::RequestKey key_;     // the tenant's name and the request id
  // A cancel goes to the engine only once it took the request (a rejected
  // call's id may name another request of the tenant); one that came
  // before is sent when Submit returns.
  std::atomic<bool> accepted_{false};
  std::atomic<bool> cancelled_{false};
  std::shared_ptr<ImageStream> stream_;
  absl::Status final_status_;  // written in Finish, read in OnDone
};

}  // namespace tern::server
