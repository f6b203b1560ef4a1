// The gRPC side of one GenerateImage call: ImageStream is the diffusion
// engine's sink, ImageReactor the call's write reactor.
//
// The sink runs on the engine's delivery thread (scheduler/delivery_thread.h),
// never on the engine thread: there it builds each GenerateImageResponse,
// encodes the images as PNG (png_codec.h), records the request's metrics,
// and starts writes. Writes go out one at a time, in order; the engine never
// waits on the client. Two objects because their lifetimes differ: gRPC
// deletes the reactor in OnDone; the engine drops the sink after OnDone.
// The stream points at the reactor under its mutex until Detach.
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/support/server_callback.h"
#include "scheduler/diffusion_engine.h"
#include "server/front/call_scope.h"
#include "server/observability/diffusion_metrics.h"
#include "tern/v1/diffusion.pb.h"

namespace tern::server {

class ImageReactor;

class ImageStream final : public scheduler::DiffusionSink {
 public:
  // `metrics` may be null; it outlives the stream.
  ImageStream(std::string request_id, std::string model, std::string tenant, DiffusionMetrics* metrics);

  void OnProgress(const scheduler::DiffusionProgress& progress) override;
  void OnImages(std::vector<runtime::DitImage> images) override;
  void OnDone(const absl::Status& status, const scheduler::DiffusionUsage& usage) override;

  // Reactor side.
  void Attach(ImageReactor* reactor);
  void OnWriteDone(bool ok);
  void Detach();

 private:
  void Push(tern::v1::GenerateImageResponse message);
  void PumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string request_id_;
  const std::string model_;
  const std::string tenant_;
  DiffusionMetrics* const metrics_;
  const absl::Time arrival_ = absl::Now();
  // Delivery thread only: an image that could not be encoded fails the call.
  absl::Status encode_error_;

  absl::Mutex mu_;
  ImageReactor* reactor_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::deque<tern::v1::GenerateImageResponse> pending_ ABSL_GUARDED_BY(mu_);
  tern::v1::GenerateImageResponse in_flight_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;      // OnDone came
  bool finished_ ABSL_GUARDED_BY(mu_) = false;  // the reactor was told to finish
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

class ImageReactor final : public grpc::ServerWriteReactor<tern::v1::GenerateImageResponse> {
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
  friend class ImageStream;
  ImageReactor(CallScope scope, scheduler::DiffusionEngine* engine, scheduler::RequestKey key)
      : scope_(std::move(scope)), engine_(engine), key_(std::move(key)) {}
  // Called by the stream under its mutex.
  void EndWith(const absl::Status& status);

  CallScope scope_;
  scheduler::DiffusionEngine* engine_;
  const scheduler::RequestKey key_;     // the tenant's name and the request id
  // A cancel goes to the engine only once it took the request (a rejected
  // call's id may name another request of the tenant); one that came
  // before is sent when Submit returns.
  std::atomic<bool> accepted_{false};
  std::atomic<bool> cancelled_{false};
  std::shared_ptr<ImageStream> stream_;
  absl::Status final_status_;  // written in EndWith, read in OnDone (after Finish)
};

}  // namespace tern::server
