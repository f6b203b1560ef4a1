// A server-streaming reactor that ends its call at once with a status and
// sends no messages: for calls rejected before any work starts.
#pragma once

#include "grpcpp/support/server_callback.h"

namespace tern::server {

template <typename Response>
class FinishedWriter final : public grpc::ServerWriteReactor<Response> {
 public:
  explicit FinishedWriter(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace tern::server
