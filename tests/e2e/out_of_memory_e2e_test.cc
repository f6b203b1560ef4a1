// A step larger than planned that runs out of device memory, while other
// clients stream: ternd in this process (so that a fault hook can wrap the
// model's runner), spoken to over its real sockets. The hook fails the first
// step that computes more tokens than a limit with the status the CUDA
// backend gives when an activation buffer cannot grow (RESOURCE_EXHAUSTED
// "out of memory: ... of device memory asked, ... free"; the real allocation
// failure is cuda_out_of_memory_test's, label gpu). The streams in that step
// end with that status; a stream waiting beside it, and the failed ones sent
// again, end with exactly the tokens of a fault-free greedy run; ternd stays
// ready and no KV block stays in use.
#include <atomic>
#include <chrono>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "runtime/base/status_macros.h"
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

constexpr char kModel[] = "tiny-llama";

// Shared by the test and the runner it wraps. Once armed, the first step
// that computes more than `limit` tokens signals, waits until released, and
// fails for want of device memory; later steps run.
class OutOfMemoryFault {
 public:
  explicit OutOfMemoryFault(size_t limit) : limit_(limit) {}
  void Arm() {
    absl::MutexLock lock(&mu_);
    armed_ = true;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    released_ = true;
  }
  bool WaitFaulting(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&faulting_), timeout);
  }
  int fired() {
    absl::MutexLock lock(&mu_);
    return fired_;
  }
  // The step's status, or OK to run it.
  absl::Status Check(size_t tokens) {
    absl::MutexLock lock(&mu_);
    if (!armed_ || tokens <= limit_) return absl::OkStatus();
    armed_ = false;
    faulting_ = true;
    mu_.Await(absl::Condition(&released_));
    ++fired_;
    return absl::ResourceExhaustedError(absl::StrCat("out of memory: allocating scratch: ", tokens * 1280,
                                                     " bytes of device memory asked, 0 bytes free"));
  }

 private:
  absl::Mutex mu_;
  const size_t limit_;
  bool armed_ ABSL_GUARDED_BY(mu_) = false;
  bool faulting_ ABSL_GUARDED_BY(mu_) = false;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  int fired_ ABSL_GUARDED_BY(mu_) = 0;
};

class OutOfMemoryRunner final : public runtime::ModelRunner {
 public:
  OutOfMemoryRunner(std::unique_ptr<runtime::ModelRunner> inner, OutOfMemoryFault* fault)
      : inner_(std::move(inner)), fault_(fault) {}
  absl::StatusOr<runtime::StepResult> Execute(const runtime::StepPlan& plan) override {
    size_t tokens = 0;
    for (const runtime::SequenceStep& s : plan.sequences) tokens += s.token_ids.size();
    RETURN_IF_ERROR(fault_->Check(tokens));
    return inner_->Execute(plan);
  }
  runtime::KvCacheLayout kv_cache_layout() const override { return inner_->kv_cache_layout(); }
  int64_t vocab_size() const override { return inner_->vocab_size(); }
  int64_t max_context_length() const override { return inner_->max_context_length(); }
  const runtime::KvCacheGroups* kv_cache_groups() const override { return inner_->kv_cache_groups(); }
  absl::Status Health() const override { return inner_->Health(); }

 private:
  std::unique_ptr<runtime::ModelRunner> inner_;
  OutOfMemoryFault* fault_;
};

tern::v1::GenerateRequest Greedy(const std::string& text, int max_tokens) {
  return GreedyRequest(kModel, text, max_tokens);
}

// A stream read to its end on its own thread.
class BackgroundStream {
 public:
  BackgroundStream(const std::string& target, const tern::v1::GenerateRequest& request) {
    thread_ = std::thread([this, target, request] {
      auto stub = tern::v1::Llm::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
      result_ = Stream(*stub, request, {.api_key = "", .timeout = seconds(120)});
    });
  }
  ~BackgroundStream() { Join(); }
  const StreamResult& Join() {
    if (thread_.joinable()) thread_.join();
    return result_;
  }

 private:
  StreamResult result_;
  std::thread thread_;
};

TEST(OutOfMemoryE2eTest, AStepOutOfDeviceMemoryFailsItsStreamsAndLeavesTheOthersExact) {
  std::ostringstream log;
  auto log_sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log);
  spdlog::default_logger()->sinks().push_back(log_sink);
  TempDir dir;
  const std::string model = MakeTinyModel(dir, kModel);
  tern::v1::ServerConfig config;
  config.mutable_listen()->set_grpc_host("127.0.0.1");
  config.mutable_listen()->set_http_host("127.0.0.1");
  config.mutable_listen()->set_grpc_port(0);
  config.mutable_listen()->set_http_port(0);
  auto* m = config.add_models();
  m->set_path(model);
  m->set_backend("cpu");
  m->set_cpu_kv_cache_mib(16);
  m->set_max_num_seqs(2);  // a third stream waits while two run
  // Steps of decodes and short prompts compute a few tokens; the long
  // prompt's prefill is the step larger than planned.
  OutOfMemoryFault fault(/*limit=*/48);
  server::DaemonHooks hooks;
  hooks.wrap_runner = [&fault](const std::string&, std::unique_ptr<runtime::ModelRunner> runner) {
    return std::unique_ptr<runtime::ModelRunner>(std::make_unique<OutOfMemoryRunner>(std::move(runner), &fault));
  };
  std::string long_text = "Long ago";
  for (int i = 0; i < 40; ++i) long_text += " and the river ran on";
  const std::vector<tern::v1::GenerateRequest> requests = {
      Greedy("Once upon a time", 160),  // running when the large step comes
      Greedy(long_text, 8),            // the step larger than planned
      Greedy("Rivers flow to the sea", 24),  // waiting beside the faulted step
  };
  // The fault-free run, each request alone, on a ternd of its own (its
  // prefix cache would spare the faulted run the large prefill).
  std::vector<std::vector<int32_t>> reference;
  {
    auto fault_free = server::Daemon::Start(config);
    ASSERT_TRUE(fault_free.ok()) << fault_free.status();
    auto stub = tern::v1::Llm::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string((*fault_free)->grpc_port()), grpc::InsecureChannelCredentials()));
    for (const auto& request : requests) {
      const StreamResult alone = Stream(*stub, request, {.api_key = "", .timeout = seconds(120)});
      ASSERT_TRUE(alone.status.ok()) << alone.status.error_message();
      ASSERT_EQ(alone.choices.at(0).token_ids.size(), size_t(request.sampling().max_tokens()));
      reference.push_back(alone.choices.at(0).token_ids);
    }
    (*fault_free)->Drain(absl::Seconds(5));
  }

  auto started = server::Daemon::Start(config, std::move(hooks));
  ASSERT_TRUE(started.ok()) << started.status();
  server::Daemon& daemon = **started;
  const std::string target = "127.0.0.1:" + std::to_string(daemon.grpc_port());
  const int http = daemon.http_port();
  const auto scrape = [&](const std::string& series) { return MetricValue(HttpGet(http, "/metrics").body, series); };
  auto stub = tern::v1::Llm::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));

  fault.Arm();
  auto running = std::make_unique<BackgroundStream>(target, requests[0]);
  const std::string steps_series = absl::StrCat("tern_engine_steps_total{model=\"", kModel, "\"}");
  const double steps_before = scrape(steps_series).value_or(0);
  ASSERT_TRUE(WaitUntil([&] { return scrape(steps_series).value_or(0) >= steps_before + 3; }, seconds(30)));
  auto large = std::make_unique<BackgroundStream>(target, requests[1]);
  ASSERT_TRUE(fault.WaitFaulting(absl::Seconds(30)));
  // The large step is in the device: the third stream arrives and waits
  // (two sequences run), so it is not in that step.
  auto waiting = std::make_unique<BackgroundStream>(target, requests[2]);
  std::this_thread::sleep_for(milliseconds(300));
  fault.Release();

  for (const StreamResult* failed : {&running->Join(), &large->Join()}) {
    EXPECT_EQ(failed->status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << failed->status.error_message();
    EXPECT_NE(failed->status.error_message().find("of device memory asked"), std::string::npos)
        << failed->status.error_message();
  }
  EXPECT_EQ(fault.fired(), 1);
  const StreamResult& beside = waiting->Join();
  ASSERT_TRUE(beside.status.ok()) << beside.status.error_message();
  EXPECT_EQ(beside.choices.at(0).token_ids, reference[2]);
  // The running stream's tokens before the fault came once and in order.
  const auto& choices = running->Join().choices;
  const std::vector<int32_t> partial = choices.count(0) > 0 ? choices.at(0).token_ids : std::vector<int32_t>{};
  ASSERT_LT(partial.size(), reference[0].size());
  EXPECT_EQ(partial, std::vector<int32_t>(reference[0].begin(), reference[0].begin() + partial.size()));

  // ternd keeps serving: the failed requests, sent again, end exactly.
  EXPECT_EQ(HttpGet(http, "/readyz").status, 200);
  EXPECT_TRUE(daemon.fatal_error().ok());
  for (int i : {0, 1}) {
    const StreamResult again = Stream(*stub, requests[size_t(i)], {.api_key = "", .timeout = seconds(120)});
    ASSERT_TRUE(again.status.ok()) << again.status.error_message();
    EXPECT_EQ(again.choices.at(0).token_ids, reference[size_t(i)]) << "request " << i;
  }
  const std::string usage_series = absl::StrCat("tern_kv_cache_usage_ratio{model=\"", kModel, "\"}");
  EXPECT_TRUE(WaitUntil([&] { return scrape(usage_series) == 0.0; }, seconds(5))) << *scrape(usage_series);
  EXPECT_EQ(scrape(absl::StrCat("tern_num_requests_running{model=\"", kModel, "\"}")), 0.0);

  daemon.Drain(absl::Seconds(5));
  log_sink->flush();
  EXPECT_NE(log.str().find("sequences failed: RESOURCE_EXHAUSTED: out of memory"), std::string::npos) << log.str();
  spdlog::default_logger()->sinks().pop_back();
}

}  // namespace
}  // namespace tern::testing
