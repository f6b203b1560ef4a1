// What the Generate e2e tests share, on top of e2e_helpers.h: the tiny
// Llama's name and limits, greedy requests, Tokenize/Detokenize calls, the
// daemon's liveness, health and idleness, and a Generate stream read on a
// thread of its own. Test-only.
#pragma once

#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tern/v1/llm.grpc.pb.h"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/e2e_helpers.h"

namespace tern::testing {

using std::chrono::milliseconds;
using std::chrono::seconds;
inline constexpr char kModel[] = "tiny-llama";
// The tiny preset's context (max_position_embeddings) and the Llama-2 vocabulary.
inline constexpr int kContext = 2048;
inline constexpr int kVocab = 32000;

// Greedy, exactly `max_tokens` tokens (EOS ignored): deterministic output.
inline tern::v1::GenerateRequest Greedy(const std::string& text, int max_tokens) {
  return GreedyRequest(kModel, text, max_tokens);
}

inline std::string Series(const std::string& name) { return name + "{model=\"" + kModel + "\"}"; }

inline std::vector<int32_t> Tokenize(tern::v1::Llm::Stub& stub, const std::string& text, bool add_special = true,
                              const std::string& model = kModel) {
  grpc::ClientContext context;
  SetDeadline(&context);
  tern::v1::TokenizeRequest request;
  request.set_model(model);
  request.set_text(text);
  request.set_add_special_tokens(add_special);
  tern::v1::TokenizeResponse response;
  const grpc::Status status = stub.Tokenize(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return {response.ids().begin(), response.ids().end()};
}

inline std::string Detokenize(tern::v1::Llm::Stub& stub, const std::vector<int32_t>& ids) {
  grpc::ClientContext context;
  SetDeadline(&context);
  tern::v1::DetokenizeRequest request;
  request.set_model(kModel);
  for (int32_t id : ids) request.add_ids(id);
  request.set_skip_special_tokens(true);
  tern::v1::DetokenizeResponse response;
  const grpc::Status status = stub.Detokenize(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.text();
}

// Running, not a zombie: the third field of /proc/PID/stat is its state.
inline bool DaemonAlive(const DaemonProcess& daemon) {
  std::ifstream stat("/proc/" + std::to_string(daemon.pid()) + "/stat");
  std::string pid, comm, state;
  return static_cast<bool>(stat >> pid >> comm >> state) && state != "Z" && state != "X";
}

inline bool Serving(const DaemonProcess& daemon) {
  auto stub = grpc::health::v1::Health::NewStub(Connect(daemon));
  grpc::ClientContext context;
  SetDeadline(&context);
  grpc::health::v1::HealthCheckResponse response;
  return stub->Check(&context, {}, &response).ok() &&
         response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

// Running requests and KV usage back at idle (both exactly 0).
inline bool EngineIdle(const DaemonProcess& daemon) {
  return ScrapeMetric(daemon, Series("tern_num_requests_running")) == 0.0 &&
         ScrapeMetric(daemon, Series("tern_num_requests_waiting")) == 0.0 &&
         ScrapeMetric(daemon, Series("tern_kv_cache_usage_ratio")) == 0.0;
}

// A Generate stream read on its own thread, cancellable from the test. A
// slow reader waits `read_delay` after each message it reads.
class BackgroundStream {
 public:
  BackgroundStream(tern::v1::Llm::Stub& stub, const tern::v1::GenerateRequest& request,
                   const CallOptions& options = {.api_key = "", .timeout = seconds(60)},
                   milliseconds read_delay = milliseconds(0)) {
    Prepare(&context_, options);
    thread_ = std::thread([this, &stub, request, read_delay] {
      auto reader = stub.Generate(&context_, request);
      result_ = ReadStream(reader.get(), [this, read_delay](const tern::v1::GenerateResponse&) {
        ++chunks_;
        if (read_delay > milliseconds(0)) std::this_thread::sleep_for(read_delay);
      });
    });
  }
  ~BackgroundStream() {
    Cancel();
    Join();
  }
  int chunks() const { return chunks_; }
  void Cancel() { context_.TryCancel(); }
  const StreamResult& Join() {
    if (thread_.joinable()) thread_.join();
    return result_;
  }

 private:
  grpc::ClientContext context_;
  std::atomic<int> chunks_{0};
  StreamResult result_;
  std::thread thread_;
};

}  // namespace tern::testing
