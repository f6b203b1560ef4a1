// Readiness when a model's engine hangs: ternd in this process (so that a
// fault hook can wrap the model's runner with one whose steps block until
// released), spoken to over its real sockets. A step that hangs for longer
// than the stall timeout turns /readyz to 503 and gRPC health to
// NOT_SERVING within a bounded time; the stall is logged once and counted
// (tern_engine_stalls_total, tern_ready 0); when the step returns, ternd is
// ready again and the stream finishes.
#include <chrono>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/config/server_config.h"
#include "server/daemon.h"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"
#include "tern/v1/llm.grpc.pb.h"
#include "tests/e2e/daemon_process.h"
#include "tests/e2e/e2e_helpers.h"

namespace tern::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

// Shared by the test and the runner it wraps: while closed, every step
// blocks on entry.
class StepGate {
 public:
  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    blocked_ = 0;
  }
  void Open() {
    absl::MutexLock lock(&mu_);
    closed_ = false;
  }
  void Pass() {
    absl::MutexLock lock(&mu_);
    if (closed_) ++blocked_;
    mu_.Await(absl::Condition(+[](bool* closed) { return !*closed; }, &closed_));
  }
  int blocked() {
    absl::MutexLock lock(&mu_);
    return blocked_;
  }

 private:
  absl::Mutex mu_;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  int blocked_ ABSL_GUARDED_BY(mu_) = 0;
};

class GatedRunner final : public runtime::ModelRunner {
 public:
  GatedRunner(std::unique_ptr<runtime::ModelRunner> inner, StepGate* gate) : inner_(std::move(inner)), gate_(gate) {}
  absl::StatusOr<runtime::StepResult> Execute(const runtime::StepPlan& plan) override {
    gate_->Pass();
    return inner_->Execute(plan);
  }
  runtime::KvCacheLayout kv_cache_layout() const override { return inner_->kv_cache_layout(); }
  int64_t vocab_size() const override { return inner_->vocab_size(); }
  int64_t max_context_length() const override { return inner_->max_context_length(); }
  absl::Status Health() const override { return inner_->Health(); }

 private:
  std::unique_ptr<runtime::ModelRunner> inner_;
  StepGate* gate_;
};

// grpc.health.v1.Health/Check for `service` through the generic stub (the
// health stubs cannot be linked beside the server's reflection): 1 SERVING,
// 2 NOT_SERVING, -1 when the call failed.
int HealthCheck(const std::string& target, const std::string& service) {
  grpc::GenericStub stub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  std::string request;  // HealthCheckRequest: field 1 (service), length-delimited
  if (!service.empty()) {
    request.push_back(0x0a);
    request.push_back(static_cast<char>(service.size()));
    request += service;
  }
  grpc::Slice slice(request);
  grpc::ByteBuffer send(&slice, 1);
  grpc::ByteBuffer receive;
  grpc::ClientContext context;
  SetDeadline(&context, seconds(5));
  absl::Mutex mu;
  bool done = false;
  grpc::Status status;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &send, &receive,
                 [&](grpc::Status s) {
                   absl::MutexLock lock(&mu);
                   status = std::move(s);
                   done = true;
                 });
  absl::MutexLock lock(&mu);
  mu.Await(absl::Condition(&done));
  if (!status.ok()) return -1;
  std::vector<grpc::Slice> slices;
  if (!receive.Dump(&slices).ok()) return -1;
  std::string response;
  for (const grpc::Slice& s : slices) response.append(reinterpret_cast<const char*>(s.begin()), s.size());
  // HealthCheckResponse: field 1 (status), varint; absent means UNKNOWN (0).
  if (response.empty()) return 0;
  if (response.size() != 2 || response[0] != 0x08) return -1;
  return response[1];
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

TEST(ReadinessE2eTest, AHungEngineStepMakesTerndNotReadyUntilItReturns) {
  std::ostringstream log;
  auto log_sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log);
  spdlog::default_logger()->sinks().push_back(log_sink);
  TempDir dir;
  const std::string model = MakeTinyModel(dir, "tiny-llama");
  tern::v1::ServerConfig config;
  config.mutable_listen()->set_grpc_host("127.0.0.1");
  config.mutable_listen()->set_http_host("127.0.0.1");
  config.mutable_listen()->set_grpc_port(0);
  config.mutable_listen()->set_http_port(0);
  config.set_engine_stall_timeout_seconds(0.3);
  auto* m = config.add_models();
  m->set_path(model);
  m->set_backend("cpu");
  m->set_cpu_kv_cache_mib(16);
  StepGate gate;
  server::DaemonHooks hooks;
  hooks.wrap_runner = [&gate](const std::string&, std::unique_ptr<runtime::ModelRunner> runner) {
    return std::unique_ptr<runtime::ModelRunner>(std::make_unique<GatedRunner>(std::move(runner), &gate));
  };
  auto started = server::Daemon::Start(config, std::move(hooks));
  ASSERT_TRUE(started.ok()) << started.status();
  server::Daemon& daemon = **started;
  const std::string target = "127.0.0.1:" + std::to_string(daemon.grpc_port());
  const int http = daemon.http_port();
  const auto scrape = [&](const std::string& series) { return MetricValue(HttpGet(http, "/metrics").body, series); };

  EXPECT_EQ(HttpGet(http, "/readyz").status, 200);
  EXPECT_EQ(HealthCheck(target, ""), 1);
  EXPECT_EQ(HealthCheck(target, "tern.v1.Llm"), 1);
  EXPECT_EQ(scrape("tern_ready"), 1.0);
  EXPECT_EQ(scrape(R"(tern_engine_stalls_total{model="tiny-llama"})"), 0.0);
  // Idle for longer than the stall timeout: still ready.
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_EQ(HttpGet(http, "/readyz").status, 200);

  // A stream whose first step hangs.
  gate.Close();
  tern::v1::GenerateRequest request;
  request.set_model("tiny-llama");
  request.set_text("Hello");
  request.mutable_sampling()->set_temperature(0.0f);
  request.mutable_sampling()->set_max_tokens(4);
  request.mutable_sampling()->set_ignore_eos(true);
  StreamResult result;
  std::thread client([&] {
    auto stub = tern::v1::Llm::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
    CallOptions options;
    options.timeout = seconds(60);
    result = Stream(*stub, request, options);
  });
  ASSERT_TRUE(WaitUntil([&] { return gate.blocked() > 0; }, seconds(30)));
  const auto hung = std::chrono::steady_clock::now();
  // Bounded: the stall timeout (0.3 s) plus one watchdog interval (75 ms).
  ASSERT_TRUE(WaitUntil([&] { return HttpGet(http, "/readyz").status == 503; }, seconds(10)));
  ASSERT_TRUE(WaitUntil([&] { return HealthCheck(target, "") == 2; }, seconds(10)));
  const double seconds_to_not_serving =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - hung).count();
  EXPECT_GE(seconds_to_not_serving, 0.25);
  EXPECT_LT(seconds_to_not_serving, 5.0);
  const HttpReply not_ready = HttpGet(http, "/readyz");
  EXPECT_EQ(not_ready.status, 503);
  EXPECT_EQ(not_ready.body, "stalled: model tiny-llama\n");
  EXPECT_EQ(HealthCheck(target, "tern.v1.Llm"), 2);
  EXPECT_EQ(scrape("tern_ready"), 0.0);
  EXPECT_EQ(scrape(R"(tern_engine_stalled{model="tiny-llama"})"), 1.0);
  std::this_thread::sleep_for(milliseconds(300));  // several checks of one stall
  EXPECT_EQ(scrape(R"(tern_engine_stalls_total{model="tiny-llama"})"), 1.0);

  gate.Open();
  client.join();
  EXPECT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.tokens, 4);
  ASSERT_TRUE(WaitUntil([&] { return HealthCheck(target, "") == 1; }, seconds(10)));
  EXPECT_EQ(HttpGet(http, "/readyz").status, 200);
  EXPECT_EQ(HealthCheck(target, "tern.v1.Llm"), 1);
  EXPECT_EQ(scrape("tern_ready"), 1.0);
  EXPECT_EQ(scrape(R"(tern_engine_stalled{model="tiny-llama"})"), 0.0);
  EXPECT_EQ(scrape(R"(tern_engine_stalls_total{model="tiny-llama"})"), 1.0);

  daemon.Drain(absl::Seconds(5));
  log_sink->flush();
  const std::string logged = log.str();
  EXPECT_EQ(Count(logged, "model tiny-llama: engine stalled: busy for"), 1u) << logged;
  EXPECT_EQ(Count(logged, "model tiny-llama: engine no longer stalled"), 1u) << logged;
  spdlog::default_logger()->sinks().pop_back();
  EXPECT_EQ(HealthCheck(target, ""), -1) << "the server is gone";
}

}  // namespace
}  // namespace tern::testing
