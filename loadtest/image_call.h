// One GenerateImage stream driven by gRPC's callback API: every progress
// event (a sampler step) is timed as a token chunk (request_metrics.h), and
// the images are counted, not kept.
//
// Threads: as GenerateCall (generate_call.h).
#pragma once

#include <chrono>
#include <string>

#include "grpcpp/grpcpp.h"
#include "loadtest/load_call.h"
#include "loadtest/request_metrics.h"
#include "tern/v1/diffusion.grpc.pb.h"

namespace tern::loadtest {

class ImageCall : public LoadCall, public grpc::ClientReadReactor<tern::v1::GenerateImageResponse> {
 public:
  // As GenerateCall's constructor; `stub` outlives the call.
  ImageCall(RequestTrace trace, tern::v1::GenerateImageRequest request, const std::string& api_key,
            std::chrono::milliseconds timeout, tern::v1::Diffusion::StubInterface* stub, CallSink* sink);

  void Start() override;
  void Cancel() override { context_.TryCancel(); }

 private:
  void OnReadDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

  grpc::ClientContext context_;
  tern::v1::GenerateImageRequest request_;
  tern::v1::GenerateImageResponse response_;
  std::chrono::milliseconds timeout_;
  tern::v1::Diffusion::StubInterface* stub_;
  CallSink* sink_;
};

}  // namespace tern::loadtest
