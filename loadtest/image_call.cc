#include "loadtest/image_call.h"

namespace tern::loadtest {

ImageCall::ImageCall(RequestTrace trace, tern::v1::GenerateImageRequest request, const std::string& api_key,
                     std::chrono::milliseconds timeout, tern::v1::Diffusion::StubInterface* stub, CallSink* sink)
    : LoadCall(std::move(trace)), request_(std::move(request)), timeout_(timeout), stub_(stub), sink_(sink) {
  trace_.image_requested = true;
  if (!api_key.empty()) context_.AddMetadata("authorization", "Bearer " + api_key);
}

void ImageCall::Start() {
  context_.set_deadline(std::chrono::system_clock::now() + timeout_);
  trace_.sent = Clock::now();
  stub_->async()->GenerateImage(&context_, &request_, this);
  StartRead(&response_);
  StartCall();
}

void ImageCall::OnReadDone(bool ok) {
  if (!ok) return;  // end of stream or failure: OnDone follows with the status
  if (response_.has_progress()) {
    trace_.token_chunk_times.push_back(Clock::now());
    trace_.counted_tokens = response_.progress().step();
  } else if (response_.has_image()) {
    ++trace_.images_received;
  }
  response_.Clear();
  StartRead(&response_);
}

void ImageCall::OnDone(const grpc::Status& status) {
  trace_.done = Clock::now();
  trace_.status_code = static_cast<int>(status.error_code());
  trace_.status_message = status.error_message();
  sink_->OnCallDone(this);  // last action: the owner may delete `this` now
}

}  // namespace tern::loadtest
