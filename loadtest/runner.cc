#include "loadtest/runner.h"

#include <algorithm>

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "grpcpp/security/credentials.h"
#include "loadtest/generate_call.h"
#include "loadtest/image_call.h"
#include "loadtest/request_builder.h"
#include "loadtest/workload.h"

namespace tern::loadtest {
namespace {

// After --max-time cancels the open streams, how long to wait for gRPC to
// report them done before giving up on them.
constexpr auto kCancelGrace = std::chrono::seconds(10);
// How often an idle dispatcher looks at RunHooks::interrupt.
constexpr auto kInterruptPoll = std::chrono::milliseconds(100);

Clock::duration Seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

}  // namespace

absl::StatusOr<std::unique_ptr<LoadRunner>> LoadRunner::Create(const LoadOptions& options,
                                                               std::vector<std::string> prompts,
                                                               std::chrono::milliseconds connect_timeout) {
  if (prompts.empty() && options.synthetic_prompt_tokens <= 0 && options.image_share < 1.0) {
    return absl::InvalidArgumentError("no prompts to send");
  }
  if (options.api == Api::kOpenAi) {
    absl::StatusOr<std::unique_ptr<OpenAiClient>> client = OpenAiClient::Create(options.target, connect_timeout);
    if (!client.ok()) return client.status();
    return std::unique_ptr<LoadRunner>(new LoadRunner(options, std::move(prompts), {}, *std::move(client)));
  }
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (!options.tls_ca.empty() || !options.tls_cert.empty()) {
    const auto read = [](const std::string& flag, const std::string& path) -> absl::StatusOr<std::string> {
      std::ifstream in(path, std::ios::binary);
      if (!in) return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot read \"", path, "\""));
      std::stringstream text;
      text << in.rdbuf();
      return text.str();
    };
    grpc::SslCredentialsOptions ssl;
    if (!options.tls_ca.empty()) {
      absl::StatusOr<std::string> ca = read("--tls-ca", options.tls_ca);
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = *ca;
    }
    if (!options.tls_cert.empty()) {
      absl::StatusOr<std::string> cert = read("--tls-cert", options.tls_cert);
      if (!cert.ok()) return cert.status();
      absl::StatusOr<std::string> key = read("--tls-key", options.tls_key);
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    credentials = grpc::SslCredentials(ssl);
  }
  std::vector<ChannelStubs> stubs;
  for (int i = 0; i < options.connections; ++i) {
    grpc::ChannelArguments args;
    // A local subchannel pool and a distinct argument make each channel open
    // its own TCP connection instead of sharing one.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("tern.load.channel_index", i);
    std::shared_ptr<grpc::Channel> channel =
        grpc::CreateCustomChannel(options.target, credentials, args);
    if (!channel->WaitForConnected(std::chrono::system_clock::now() + connect_timeout)) {
      return absl::UnavailableError(absl::StrCat("cannot connect to ", options.target, " within ",
                                                 connect_timeout.count(), " ms"));
    }
    stubs.push_back({tern::v1::Llm::NewStub(channel), tern::v1::Diffusion::NewStub(channel)});
  }
  return std::unique_ptr<LoadRunner>(new LoadRunner(options, std::move(prompts), std::move(stubs), nullptr));
}

LoadRunner::LoadRunner(const LoadOptions& options, std::vector<std::string> prompts,
                       std::vector<ChannelStubs> stubs, std::unique_ptr<OpenAiClient> openai)
    : options_(options), prompts_(std::move(prompts)), stubs_(std::move(stubs)), openai_(std::move(openai)) {}

LoadRunner::~LoadRunner() {
  // Calls their transport never finished may still be touched by its
  // threads: leak them rather than free memory in use. Run() counts them as
  // abandoned. (The OpenAI client's threads stop before it goes.)
  for (auto& [index, call] : live_) call.release();
}

std::unique_ptr<LoadCall> LoadRunner::NewCall(RequestTrace trace, const PlannedRequest& planned,
                                              std::chrono::milliseconds timeout) {
  const std::string& api_key = options_.tenants[planned.tenant].api_key;
  CallSink* sink = this;
  if (openai_ != nullptr) {
    return std::make_unique<OpenAiCall>(std::move(trace), BuildChatCompletionBody(options_, planned, prompts_).dump(),
                                        api_key, timeout, openai_.get(), sink);
  }
  const ChannelStubs& channel = stubs_[next_stub_++ % stubs_.size()];
  if (planned.image) {
    return std::make_unique<ImageCall>(std::move(trace), BuildImageRequest(options_, planned), api_key, timeout,
                                       channel.diffusion.get(), sink);
  }
  return std::make_unique<GenerateCall>(std::move(trace), BuildGenerateRequest(options_, planned, prompts_), api_key,
                                        timeout, channel.llm.get(), sink);
}

void LoadRunner::OnCallDone(LoadCall* call) {
  absl::MutexLock lock(&mu_);
  finished_.push_back(call);
  finished_cv_.Signal();
}

void LoadRunner::Reap(RunResult* result, RunProgress* progress) {
  std::vector<LoadCall*> done;
  {
    absl::MutexLock lock(&mu_);
    done.swap(finished_);
  }
  for (LoadCall* call : done) {
    RequestTrace& trace = call->trace();
    const int64_t index = trace.index;
    if (trace.status_code == 0) {
      ++progress->ok;
      progress->output_tokens += trace.usage_completion_tokens.value_or(trace.counted_tokens);
    } else {
      ++progress->failed;
    }
    result->traces.push_back(std::move(trace));
    live_.erase(index);  // deletes the call
  }
}

RunResult LoadRunner::Run(const RunHooks& hooks) {
  // A zero period would spin: no progress reports then.
  const std::function<void(const RunProgress&)> on_progress =
      hooks.progress_every.count() > 0 ? hooks.on_progress : nullptr;
  const std::chrono::milliseconds progress_every = hooks.progress_every;
  RunResult result;
  RunProgress progress;
  Workload workload(options_, static_cast<int>(prompts_.size()));
  const Clock::time_point start = Clock::now();
  result.start = start;
  const Clock::time_point hard_deadline = start + Seconds(options_.max_time_s);
  const Clock::time_point issue_deadline =
      options_.duration_s.has_value() ? std::min(hard_deadline, start + Seconds(*options_.duration_s))
                                      : hard_deadline;
  const size_t cap = static_cast<size_t>(
      options_.mode == ArrivalMode::kClosedLoop ? options_.concurrency : options_.max_in_flight);
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(options_.request_timeout_s * 1000));
  Clock::time_point next_progress = start + progress_every;
  bool issuing = true;
  // Set when an open-loop arrival fell past --duration: the run then lasts
  // the whole window even if the last request finished early, so rates are
  // per window and not inflated by an idle tail.
  bool window_ended_issuing = false;
  PlannedRequest next = workload.Next();

  while (true) {
    Reap(&result, &progress);
    const Clock::time_point now = Clock::now();
    const Clock::time_point due = start + Seconds(next.arrival_s);
    if (issuing) {
      const bool enough = options_.num_requests.has_value() && progress.sent >= *options_.num_requests;
      // Open loop: every arrival inside the window is sent, even one the
      // in-flight cap held back past its end. Closed loop: the window is wall time.
      const bool window_over =
          options_.mode == ArrivalMode::kClosedLoop ? now >= issue_deadline : due >= issue_deadline;
      if (enough || window_over) {
        issuing = false;
        window_ended_issuing = !enough && options_.mode != ArrivalMode::kClosedLoop;
      }
    }
    if (!issuing && live_.empty() && (!window_ended_issuing || now >= issue_deadline)) break;
    if (now >= hard_deadline) {
      result.hit_max_time = true;
      break;
    }
    if (hooks.interrupt != nullptr && hooks.interrupt->load()) {
      result.interrupted = true;
      break;
    }
    if (issuing && live_.size() < cap && now >= due) {
      RequestTrace trace;
      trace.index = next.index;
      trace.tenant = next.tenant;
      trace.max_tokens = next.max_tokens;
      // A closed loop has no schedule: a request is due when a slot frees.
      trace.scheduled = options_.mode == ArrivalMode::kClosedLoop ? now : due;
      trace.sot_requested = next.sot;
      std::unique_ptr<LoadCall> call = NewCall(std::move(trace), next, timeout);
      LoadCall* raw = call.get();
      live_.emplace(next.index, std::move(call));  // before Start: OnDone may come at once
      raw->Start();
      ++progress.sent;
      next = workload.Next();
      continue;
    }
    if (on_progress && now >= next_progress) {
      progress.elapsed_s = std::chrono::duration<double>(now - start).count();
      progress.in_flight = static_cast<int64_t>(live_.size());
      on_progress(progress);
      next_progress = std::max(next_progress + progress_every, now);
    }
    Clock::time_point wake = hard_deadline;
    if (on_progress) wake = std::min(wake, next_progress);
    if (issuing && live_.size() < cap) wake = std::min(wake, due);
    if (window_ended_issuing) wake = std::min(wake, issue_deadline);
    if (hooks.interrupt != nullptr) wake = std::min(wake, now + kInterruptPoll);
    if (wake <= now) continue;
    absl::MutexLock lock(&mu_);
    if (finished_.empty()) finished_cv_.WaitWithTimeout(&mu_, absl::FromChrono(wake - now));
  }

  if (result.hit_max_time || result.interrupted) {
    for (auto& [index, call] : live_) call->Cancel();
    const Clock::time_point give_up = Clock::now() + kCancelGrace;
    while (!live_.empty() && Clock::now() < give_up) {
      {
        absl::MutexLock lock(&mu_);
        if (finished_.empty()) finished_cv_.WaitWithTimeout(&mu_, absl::Milliseconds(50));
      }
      Reap(&result, &progress);
    }
    result.abandoned = static_cast<int64_t>(live_.size());
  }
  result.end = Clock::now();
  if (on_progress) {
    progress.elapsed_s = std::chrono::duration<double>(result.end - start).count();
    progress.in_flight = static_cast<int64_t>(live_.size());
    on_progress(progress);
  }
  std::sort(result.traces.begin(), result.traces.end(),
            [](const RequestTrace& a, const RequestTrace& b) { return a.index < b.index; });
  return result;
}

}  // namespace tern::loadtest
