// LoadRunner: sends the workload to ternd (tern.v1 gRPC) or to any
// OpenAI-compatible server (--api openai) and collects one trace per request.
//
// One dispatcher loop (the thread that calls Run) issues requests at their
// arrival times, never with more than --max-in-flight streams open, and
// reaps finished calls. Open and closed loop are the same loop: a closed
// loop is every arrival at time 0 with the in-flight cap at --concurrency.
// Issuing stops at --duration or --requests; the run ends when nothing is in
// flight (and, for an open loop cut by --duration, the window is over), or
// at --max-time, when every open stream is cancelled (their
// traces end CANCELLED) and the run waits a bounded grace period for gRPC
// to report them done. The API is the calls' business (load_call.h): the
// loop is the same for both.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "loadtest/load_call.h"
#include "loadtest/openai_call.h"
#include "loadtest/options.h"
#include "loadtest/request_metrics.h"
#include "tern/v1/diffusion.grpc.pb.h"
#include "tern/v1/llm.grpc.pb.h"

namespace tern::loadtest {

// A snapshot for the progress line.
struct RunProgress {
  double elapsed_s = 0;
  int64_t sent = 0;
  int64_t in_flight = 0;
  int64_t ok = 0;
  int64_t failed = 0;
  int64_t output_tokens = 0;  // of finished OK requests
};

// How Run talks to its caller while it runs.
struct RunHooks {
  // Called on the dispatcher thread about every `progress_every` and once
  // at the end; may be empty. Not called when progress_every <= 0.
  std::function<void(const RunProgress&)> on_progress;
  std::chrono::milliseconds progress_every{250};
  // When it becomes true (e.g. from a SIGINT handler), the run stops as at
  // --max-time: no more requests, open streams cancelled. Checked at least
  // every 100 ms. May be null.
  const std::atomic<bool>* interrupt = nullptr;
};

struct RunResult {
  std::vector<RequestTrace> traces;  // one per sent request, in order of index
  Clock::time_point start;
  Clock::time_point end;             // when the last request finished (or the run gave up)
  bool hit_max_time = false;         // --max-time cut the run short
  bool interrupted = false;          // RunHooks::interrupt cut the run short
  int64_t abandoned = 0;             // streams gRPC never reported done after cancel (leaked)
};

class LoadRunner : private CallSink {
 public:
  // gRPC: connects `options.connections` channels to the target; OpenAI:
  // checks that the target accepts a connection. UNAVAILABLE when it is not
  // reachable within `connect_timeout`. `prompts` must be non-empty unless
  // the options ask for synthetic prompts.
  static absl::StatusOr<std::unique_ptr<LoadRunner>> Create(const LoadOptions& options,
                                                            std::vector<std::string> prompts,
                                                            std::chrono::milliseconds connect_timeout);
  ~LoadRunner() override;

  // Runs the whole load and returns the traces. Once per runner.
  RunResult Run(const RunHooks& hooks);

 private:
  // The services of one gRPC channel.
  struct ChannelStubs {
    std::unique_ptr<tern::v1::Llm::Stub> llm;
    std::unique_ptr<tern::v1::Diffusion::Stub> diffusion;
  };
  LoadRunner(const LoadOptions& options, std::vector<std::string> prompts, std::vector<ChannelStubs> stubs,
             std::unique_ptr<OpenAiClient> openai);
  void OnCallDone(LoadCall* call) override;
  // The call of one planned request, not yet started.
  std::unique_ptr<LoadCall> NewCall(RequestTrace trace, const PlannedRequest& planned, std::chrono::milliseconds timeout);
  // Moves finished calls' traces into `result` and deletes the calls.
  void Reap(RunResult* result, RunProgress* progress);

  const LoadOptions options_;
  const std::vector<std::string> prompts_;
  std::vector<ChannelStubs> stubs_;                          // gRPC
  size_t next_stub_ = 0;
  std::unique_ptr<OpenAiClient> openai_;                     // OpenAI
  std::map<int64_t, std::unique_ptr<LoadCall>> live_;  // dispatcher thread only

  absl::Mutex mu_;
  absl::CondVar finished_cv_;
  std::vector<LoadCall*> finished_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tern::loadtest
