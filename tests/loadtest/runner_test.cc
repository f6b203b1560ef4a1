// LoadRunner against an in-process fake tern.v1.Llm server on loopback: the
// client's timing, caps, cancellation and metadata, without a model.
#include "loadtest/runner.h"

#include <atomic>
#include <set>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "loadtest/report.h"

namespace tern::loadtest {
namespace {

using std::chrono::milliseconds;

// Streams max_tokens tokens: first an empty chunk at once, then one token per
// chunk (`first_token_delay` before the first, `token_delay` between the
// rest), the last with finish_reason LENGTH, then a usage-only message.
// Model "unavailable" fails at once; model "hang" streams nothing until the
// client cancels. A SKELETON_OF_THOUGHT request with an outline streams its
// points interleaved, one token per point per chunk, and ends with the
// decoding used and a SotReport.
class FakeLlm final : public tern::v1::Llm::Service {
 public:
  milliseconds first_token_delay{30};
  milliseconds token_delay{2};

  grpc::Status Generate(grpc::ServerContext* context, const tern::v1::GenerateRequest* request,
                        grpc::ServerWriter<tern::v1::GenerateResponse>* writer) override {
    {
      absl::MutexLock lock(&mu_);
      const auto auth = context->client_metadata().find("authorization");
      authorization_.push_back(auth == context->client_metadata().end()
                                   ? std::string()
                                   : std::string(auth->second.data(), auth->second.size()));
      requests_.push_back(*request);
      peers_.insert(context->peer());
      max_in_flight_ = std::max(max_in_flight_, ++in_flight_);
    }
    const grpc::Status status = Stream(context, *request, writer);
    absl::MutexLock lock(&mu_);
    --in_flight_;
    return status;
  }

  int max_in_flight() {
    absl::MutexLock lock(&mu_);
    return max_in_flight_;
  }
  std::vector<std::string> authorization() {
    absl::MutexLock lock(&mu_);
    return authorization_;
  }
  std::vector<tern::v1::GenerateRequest> requests() {
    absl::MutexLock lock(&mu_);
    return requests_;
  }
  // Client addresses ("ipv4:127.0.0.1:PORT"): one per TCP connection.
  std::set<std::string> peers() {
    absl::MutexLock lock(&mu_);
    return peers_;
  }
  void ClearPeers() {
    absl::MutexLock lock(&mu_);
    peers_.clear();
  }

 private:
  grpc::Status Stream(grpc::ServerContext* context, const tern::v1::GenerateRequest& request,
                      grpc::ServerWriter<tern::v1::GenerateResponse>* writer) {
    if (request.model() == "unavailable") return grpc::Status(grpc::StatusCode::UNAVAILABLE, "no engine");
    if (request.model() == "hang") {
      for (int i = 0; i < 3000 && !context->IsCancelled(); ++i) std::this_thread::sleep_for(milliseconds(10));
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    }
    if (request.decoding_mode() == tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT) return StreamSot(request, writer);
    tern::v1::GenerateResponse empty;
    empty.add_choices()->set_index(0);
    writer->Write(empty);
    const int n = request.sampling().max_tokens();
    for (int i = 0; i < n; ++i) {
      std::this_thread::sleep_for(i == 0 ? first_token_delay : token_delay);
      tern::v1::GenerateResponse chunk;
      tern::v1::Choice* choice = chunk.add_choices();
      choice->add_token_ids(10 + i);
      choice->set_text("t");
      if (i + 1 == n) choice->set_finish_reason(tern::v1::FINISH_REASON_LENGTH);
      if (!writer->Write(chunk)) return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
    }
    tern::v1::GenerateResponse last;
    last.mutable_usage()->set_completion_tokens(n);
    last.mutable_usage()->set_prompt_tokens(request.has_token_ids() ? request.token_ids().ids_size() : 3);
    writer->Write(last);
    return grpc::Status::OK;
  }

  grpc::Status StreamSot(const tern::v1::GenerateRequest& request,
                         grpc::ServerWriter<tern::v1::GenerateResponse>* writer) {
    const int points = request.sot().outline_size();
    if (points == 0) return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "the fake needs an outline");
    const int per_point = request.sot().has_max_point_tokens() ? request.sot().max_point_tokens()
                                                               : request.sampling().max_tokens() / points;
    for (int t = 0; t < per_point; ++t) {
      std::this_thread::sleep_for(t == 0 ? first_token_delay : token_delay);
      tern::v1::GenerateResponse chunk;
      for (int p = 0; p < points; ++p) {
        tern::v1::Choice* choice = chunk.add_choices();
        choice->set_index(p);
        choice->set_part(tern::v1::CHOICE_PART_POINT);
        choice->add_token_ids(10 + t);
        choice->set_text(t == 0 ? std::to_string(p + 1) + ". " + request.sot().outline(p) + " t" : "t");
        if (t + 1 == per_point) choice->set_finish_reason(tern::v1::FINISH_REASON_LENGTH);
      }
      if (!writer->Write(chunk)) return grpc::Status(grpc::StatusCode::CANCELLED, "client gone");
    }
    tern::v1::GenerateResponse last;
    last.mutable_usage()->set_completion_tokens(points * per_point);
    last.mutable_usage()->set_prompt_tokens(3);
    last.set_decoding_mode(tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT);
    tern::v1::SotReport* report = last.mutable_sot();
    for (int p = 0; p < points; ++p) {
      tern::v1::SkeletonPoint* point = report->add_points();
      point->set_number(p + 1);
      point->set_text(request.sot().outline(p));
    }
    writer->Write(last);
    return grpc::Status::OK;
  }

  absl::Mutex mu_;
  int in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int max_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> authorization_ ABSL_GUARDED_BY(mu_);
  std::vector<tern::v1::GenerateRequest> requests_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> peers_ ABSL_GUARDED_BY(mu_);
};

class RunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&fake_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    target_ = "127.0.0.1:" + std::to_string(port);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  LoadOptions Options(std::vector<std::string> args) {
    args.insert(args.end(), {"--target", target_});
    bool help = false;
    absl::StatusOr<LoadOptions> options = ParseLoadOptions(args, &help);
    EXPECT_TRUE(options.ok()) << options.status();
    return options.value_or(LoadOptions());
  }

  RunResult RunOrDie(const LoadOptions& options, std::vector<std::string> prompts) {
    absl::StatusOr<std::unique_ptr<LoadRunner>> runner =
        LoadRunner::Create(options, std::move(prompts), std::chrono::seconds(5));
    EXPECT_TRUE(runner.ok()) << runner.status();
    if (!runner.ok()) return {};
    return (*runner)->Run(RunHooks());
  }

  FakeLlm fake_;
  std::unique_ptr<grpc::Server> server_;
  std::string target_;
};

TEST_F(RunnerTest, OpenLoopTimesEveryTokenAndSendsTenantKeys) {
  fake_.token_delay = milliseconds(10);
  const LoadOptions options =
      Options({"--model", "fake", "--rate", "50", "--arrival", "constant", "--requests", "10", "--prompts", "x",
               "--max-tokens", "5", "--tenant-mix", "keyA:1,keyB:1", "--seed", "3"});
  const RunResult result = RunOrDie(options, {"alpha", "beta", "gamma"});
  ASSERT_EQ(result.traces.size(), 10u);
  EXPECT_FALSE(result.hit_max_time);
  const std::vector<std::string> auth = fake_.authorization();
  const std::vector<tern::v1::GenerateRequest> requests = fake_.requests();
  ASSERT_EQ(auth.size(), 10u);
  std::set<std::string> keys(auth.begin(), auth.end());
  EXPECT_EQ(keys, (std::set<std::string>{"Bearer keyA", "Bearer keyB"}));
  for (size_t i = 0; i < result.traces.size(); ++i) {
    const RequestTrace& t = result.traces[i];
    EXPECT_EQ(t.index, static_cast<int64_t>(i));
    EXPECT_EQ(t.status_code, 0) << t.status_message;
    // The empty first chunk and the usage-only last one carry no tokens.
    EXPECT_EQ(t.token_chunk_times.size(), 5u);
    EXPECT_EQ(t.counted_tokens, 5);
    EXPECT_EQ(t.usage_completion_tokens.value_or(-1), 5);
    EXPECT_EQ(t.usage_prompt_tokens.value_or(-1), 3);
    EXPECT_EQ(t.finish_reason, tern::v1::FINISH_REASON_LENGTH);
    const RequestMetrics m = ComputeRequestMetrics(t);
    ASSERT_TRUE(m.ttft_ms.has_value());
    EXPECT_GE(*m.ttft_ms, 30.0);  // the fake waits 30 ms before the first token
    ASSERT_EQ(m.itl_ms.size(), 4u);
    // The gaps tile the span from the first token chunk to the last. The
    // fake spaces its writes 10 ms apart; delivery may bunch single chunks,
    // so only the total is checked, loosely.
    double span = 0;
    for (double gap : m.itl_ms) {
      EXPECT_GE(gap, 0);
      span += gap;
    }
    const double first_to_last =
        std::chrono::duration<double, std::milli>(t.token_chunk_times.back() - t.token_chunk_times.front()).count();
    EXPECT_NEAR(span, first_to_last, 1e-6);
    EXPECT_GE(span, 10.0);
    // Constant arrivals 20 ms apart.
    const double scheduled_ms = std::chrono::duration<double, std::milli>(t.scheduled - result.start).count();
    EXPECT_NEAR(scheduled_ms, 20.0 * i, 1e-6);
    EXPECT_GE(t.sent, t.scheduled);
  }
  for (const tern::v1::GenerateRequest& r : requests) {
    EXPECT_EQ(r.model(), "fake");
    EXPECT_TRUE(r.text() == "alpha" || r.text() == "beta" || r.text() == "gamma") << r.text();
    EXPECT_EQ(r.sampling().max_tokens(), 5);
    EXPECT_EQ(r.request_id().rfind("tern-load-3-", 0), 0u) << r.request_id();
  }
  EXPECT_GE(result.end - result.start, milliseconds(180 + 30 + 40));
}

TEST_F(RunnerTest, ClosedLoopNeverExceedsConcurrency) {
  fake_.first_token_delay = milliseconds(20);
  const LoadOptions options = Options({"--model", "fake", "--concurrency", "4", "--requests", "24", "--prompts",
                                       "x", "--max-tokens", "3"});
  const RunResult result = RunOrDie(options, {"p"});
  ASSERT_EQ(result.traces.size(), 24u);
  for (const RequestTrace& t : result.traces) EXPECT_EQ(t.status_code, 0) << t.status_message;
  EXPECT_LE(fake_.max_in_flight(), 4);
  EXPECT_GE(fake_.max_in_flight(), 2);
  // Six waves of four 20+ ms requests cannot finish in under 120 ms.
  EXPECT_GE(result.end - result.start, milliseconds(120));
  // A closed loop sends as soon as a slot frees: no client-side queueing.
  for (const RequestTrace& t : result.traces) EXPECT_LT(t.sent - t.scheduled, milliseconds(50));
}

TEST_F(RunnerTest, InFlightCapHoldsBackOpenLoopArrivals) {
  fake_.first_token_delay = milliseconds(100);
  const LoadOptions options = Options({"--model", "fake", "--rate", "1000", "--arrival", "constant", "--requests",
                                       "6", "--max-in-flight", "2", "--prompts", "x", "--max-tokens", "1"});
  const RunResult result = RunOrDie(options, {"p"});
  ASSERT_EQ(result.traces.size(), 6u);
  EXPECT_LE(fake_.max_in_flight(), 2);
  // Requests 2..5 waited for a free slot: sent well after they were due.
  EXPECT_GE(result.traces[5].sent - result.traces[5].scheduled, milliseconds(150));
}

TEST_F(RunnerTest, DurationStopsIssuing) {
  const LoadOptions options = Options({"--model", "fake", "--rate", "100", "--arrival", "constant", "--duration",
                                       "0.3", "--prompts", "x", "--max-tokens", "1"});
  const RunResult result = RunOrDie(options, {"p"});
  // Arrivals at 0, 10, ..., 290 ms are inside the 300 ms window.
  EXPECT_EQ(result.traces.size(), 30u);
}

TEST_F(RunnerTest, OpenLoopRunLastsTheWholeWindow) {
  // Constant 1 req/s: the second arrival (1 s) is past the 0.5 s window;
  // the run must still last the window so rates are per window.
  const LoadOptions options = Options({"--model", "fake", "--rate", "1", "--arrival", "constant", "--duration",
                                       "0.5", "--prompts", "x", "--max-tokens", "1"});
  const RunResult result = RunOrDie(options, {"p"});
  ASSERT_EQ(result.traces.size(), 1u);
  EXPECT_GE(result.end - result.start, milliseconds(500));
  EXPECT_LT(result.end - result.start, milliseconds(2000));
}

TEST_F(RunnerTest, MaxTimeCancelsStreamsThatNeverEnd) {
  const LoadOptions options = Options({"--model", "hang", "--concurrency", "3", "--requests", "3", "--prompts",
                                       "x", "--max-time", "0.5"});
  const auto start = std::chrono::steady_clock::now();
  const RunResult result = RunOrDie(options, {"p"});
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_TRUE(result.hit_max_time);
  EXPECT_EQ(result.abandoned, 0);
  ASSERT_EQ(result.traces.size(), 3u);
  for (const RequestTrace& t : result.traces) EXPECT_EQ(t.status_code, grpc::StatusCode::CANCELLED);
}

TEST_F(RunnerTest, InterruptStopsTheRunAndCancelsStreams) {
  const LoadOptions options =
      Options({"--model", "hang", "--rate", "20", "--duration", "30", "--prompts", "x", "--max-time", "60"});
  absl::StatusOr<std::unique_ptr<LoadRunner>> runner = LoadRunner::Create(options, {"p"}, std::chrono::seconds(5));
  ASSERT_TRUE(runner.ok()) << runner.status();
  std::atomic<bool> interrupt{false};
  std::vector<RunProgress> progress;
  RunHooks hooks;
  hooks.interrupt = &interrupt;
  hooks.progress_every = milliseconds(50);
  hooks.on_progress = [&](const RunProgress& p) { progress.push_back(p); };
  std::thread press_ctrl_c([&] {
    std::this_thread::sleep_for(milliseconds(300));
    interrupt.store(true);
  });
  const auto start = std::chrono::steady_clock::now();
  const RunResult result = (*runner)->Run(hooks);
  press_ctrl_c.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_TRUE(result.interrupted);
  EXPECT_FALSE(result.hit_max_time);
  ASSERT_GE(result.traces.size(), 1u);
  for (const RequestTrace& t : result.traces) EXPECT_EQ(t.status_code, grpc::StatusCode::CANCELLED);
  // Progress was reported while it ran and once at the end, with nothing left in flight.
  ASSERT_GE(progress.size(), 3u);
  EXPECT_GT(progress[progress.size() / 2].in_flight, 0);
  EXPECT_EQ(progress.back().in_flight, 0);
  EXPECT_EQ(progress.back().failed, static_cast<int64_t>(result.traces.size()));
}

TEST_F(RunnerTest, ConnectionsOpenSeparateTcpConnections) {
  for (const int connections : {1, 3}) {
    fake_.ClearPeers();
    const LoadOptions options = Options({"--model", "fake", "--concurrency", "3", "--requests", "9", "--prompts",
                                         "x", "--max-tokens", "1", "--connections", std::to_string(connections)});
    const RunResult result = RunOrDie(options, {"p"});
    ASSERT_EQ(result.traces.size(), 9u);
    EXPECT_EQ(fake_.peers().size(), static_cast<size_t>(connections));
  }
}

TEST_F(RunnerTest, ServerErrorsEndTracesWithTheirStatus) {
  const LoadOptions options =
      Options({"--model", "unavailable", "--rate", "100", "--requests", "4", "--prompts", "x", "--api-key", "k"});
  const RunResult result = RunOrDie(options, {"p"});
  ASSERT_EQ(result.traces.size(), 4u);
  for (const RequestTrace& t : result.traces) {
    EXPECT_EQ(t.status_code, grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(t.status_message, "no engine");
    EXPECT_TRUE(t.token_chunk_times.empty());
  }
  for (const std::string& a : fake_.authorization()) EXPECT_EQ(a, "Bearer k");
}

TEST_F(RunnerTest, SyntheticPromptsGoAsTokenIds) {
  const LoadOptions options = Options({"--model", "fake", "--concurrency", "2", "--requests", "4",
                                       "--synthetic-prompt-tokens", "16", "--max-tokens", "2", "--ignore-eos",
                                       "--temperature", "0"});
  const RunResult result = RunOrDie(options, {});
  ASSERT_EQ(result.traces.size(), 4u);
  for (const RequestTrace& t : result.traces) EXPECT_EQ(t.usage_prompt_tokens.value_or(-1), 16);
  for (const tern::v1::GenerateRequest& r : fake_.requests()) {
    ASSERT_TRUE(r.has_token_ids());
    EXPECT_EQ(r.token_ids().ids_size(), 16);
    EXPECT_TRUE(r.sampling().ignore_eos());
    EXPECT_TRUE(r.sampling().has_temperature());
    EXPECT_EQ(r.sampling().temperature(), 0);
  }
}

TEST_F(RunnerTest, SotShareSendsOutlinesAndTracesEveryPart) {
  const LoadOptions options =
      Options({"--model", "fake", "--concurrency", "4", "--requests", "12", "--prompts", "x", "--max-tokens", "12",
               "--sot-share", "0.5", "--sot-outline-points", "3", "--sot-point-tokens", "4", "--seed", "5"});
  const RunResult result = RunOrDie(options, {"p"});
  ASSERT_EQ(result.traces.size(), 12u);
  int sot = 0;
  for (const RequestTrace& t : result.traces) {
    EXPECT_EQ(t.status_code, 0) << t.status_message;
    EXPECT_EQ(t.counted_tokens, 12) << "tokens of every point count";
    EXPECT_EQ(t.usage_completion_tokens.value_or(-1), 12);
    if (t.sot_requested) {
      ++sot;
      EXPECT_EQ(t.decoding_used, tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT);
      EXPECT_TRUE(t.sot_report);
      EXPECT_EQ(t.sot_points, 3);
      EXPECT_EQ(t.token_chunk_times.size(), 4u) << "one chunk per step carries all three points";
    } else {
      EXPECT_EQ(t.decoding_used, 0) << "the fake reports no decoding for normal requests";
      EXPECT_EQ(t.token_chunk_times.size(), 12u);
    }
  }
  EXPECT_GT(sot, 0);
  EXPECT_LT(sot, 12);
  for (const tern::v1::GenerateRequest& r : fake_.requests()) {
    if (r.decoding_mode() == tern::v1::DECODING_MODE_SKELETON_OF_THOUGHT) {
      EXPECT_EQ(r.sot().outline_size(), 3);
      EXPECT_EQ(r.sot().max_point_tokens(), 4);
      EXPECT_TRUE(r.sampling().ignore_eos());
    } else {
      EXPECT_EQ(r.decoding_mode(), tern::v1::DECODING_MODE_NORMAL);
      EXPECT_FALSE(r.has_sot());
    }
  }
  const Report report = BuildReport(options, result.traces, RunEnd{1.0});
  EXPECT_EQ(report.sot.sent, sot);
  EXPECT_EQ(report.sot.used_sot, sot);
  EXPECT_EQ(report.non_sot.sent, 12 - sot);
}

TEST(RunnerCreateTest, FailsClearlyWhenNothingListens) {
  bool help = false;
  absl::StatusOr<LoadOptions> options = ParseLoadOptions(
      {"--model", "m", "--rate", "1", "--requests", "1", "--prompts", "x", "--target", "127.0.0.1:1"}, &help);
  ASSERT_TRUE(options.ok());
  absl::StatusOr<std::unique_ptr<LoadRunner>> runner = LoadRunner::Create(*options, {"p"}, milliseconds(300));
  ASSERT_FALSE(runner.ok());
  EXPECT_EQ(runner.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(std::string(runner.status().message()).find("127.0.0.1:1"), std::string::npos);
}

}  // namespace
}  // namespace tern::loadtest
