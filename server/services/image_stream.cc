#include "server/services/image_stream.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "server/grpc/status_conversion.h"
#include "server/services/png_codec.h"

namespace tern::server {

ImageStream::ImageStream(std::string request_id, std::string model, std::string tenant, DiffusionMetrics* metrics)
    : request_id_(std::move(request_id)), model_(std::move(model)), tenant_(std::move(tenant)), metrics_(metrics) {}

void ImageStream::OnProgress(const scheduler::DiffusionProgress& progress) {
  tern::v1::GenerateImageResponse message;
  message.set_request_id(request_id_);
  auto* p = message.mutable_progress();
  p->set_step(progress.step);
  p->set_total_steps(progress.total_steps);
  p->set_elapsed_seconds(absl::ToDoubleSeconds(progress.since_started));
  writes_.Push(std::move(message));
}

void ImageStream::OnImages(std::vector<runtime::DitImage> images) {
  for (size_t i = 0; i < images.size(); ++i) {
    const runtime::DitImage& image = images[i];
    absl::StatusOr<std::string> png = EncodePng(image.pixels, image.channels, image.height, image.width);
    if (!png.ok()) {
      encode_error_ = absl::InternalError(absl::StrCat("image ", i, " could not be encoded: ", png.status().message()));
      return;
    }
    tern::v1::GenerateImageResponse message;
    message.set_request_id(request_id_);
    auto* out = message.mutable_image();
    out->set_index(static_cast<int32_t>(i));
    out->set_width(image.width);
    out->set_height(image.height);
    out->set_seed(image.seed);
    out->set_png(*std::move(png));
    writes_.Push(std::move(message));
  }
}

void ImageStream::OnDone(const absl::Status& engine_status, const scheduler::DiffusionUsage& usage) {
  const absl::Status status = engine_status.ok() ? encode_error_ : engine_status;
  if (metrics_ != nullptr) {
    metrics_->ObserveRequest(model_, tenant_, status, usage.images, usage.queue_time, absl::Now() - arrival_);
  }
  if (status.ok()) {
    tern::v1::GenerateImageResponse last;
    last.set_request_id(request_id_);
    last.set_done(true);
    writes_.Push(std::move(last));
  }
  writes_.End(status);
}

void ImageStream::OnRejected(const absl::Status& status) {
  if (metrics_ != nullptr) metrics_->ObserveRejected(model_, tenant_);
  writes_.End(status);
}

bool SubmitImages(scheduler::DiffusionEngine* engine, scheduler::DiffusionRequest request,
                  const std::shared_ptr<ImageStream>& stream) {
  const absl::Status submitted = engine->Submit(std::move(request), stream);
  if (!submitted.ok()) stream->OnRejected(submitted);
  return submitted.ok();
}

ImageReactor* ImageReactor::Start(CallScope scope, scheduler::DiffusionEngine* engine,
                                  scheduler::DiffusionRequest request, const std::string& model,
                                  DiffusionMetrics* metrics) {
  const std::string tenant = scope.tenant();
  // The engine keys the request by its tenant (a null one is the default).
  const std::string tenant_name = request.tenant != nullptr ? request.tenant->name : scheduler::kDefaultTenantName;
  auto* reactor = new ImageReactor(std::move(scope), engine, {tenant_name, request.request_id});
  auto stream = std::make_shared<ImageStream>(request.request_id, model, tenant, metrics);
  reactor->stream_ = stream;
  if (SubmitImages(engine, std::move(request), stream)) {
    reactor->accepted_ = true;
    if (reactor->cancelled_) engine->Cancel(reactor->key_);
  }
  stream->Attach(reactor);
  return reactor;
}

void ImageReactor::StartWrite(const tern::v1::GenerateImageResponse* message) {
  grpc::ServerWriteReactor<tern::v1::GenerateImageResponse>::StartWrite(message);
}

void ImageReactor::Finish(const absl::Status& status) {
  final_status_ = status;
  grpc::ServerWriteReactor<tern::v1::GenerateImageResponse>::Finish(ToGrpcStatus(status));
}

void ImageReactor::OnDone() {
  stream_->Detach();
  scope_.Finish(final_status_).IgnoreError();  // already the call's status
  delete this;
}

}  // namespace tern::server
