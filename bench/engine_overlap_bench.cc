// Async scheduling's effect on the engine's step period, with the device
// simulated: the LLM Engine over the fake model runner of the scheduler
// tests, whose Collect returns `device_us` after its Launch began (spinning,
// as a thread waiting for a GPU does). Without async scheduling a step
// period is the device time plus the engine's host work (collect, apply,
// hand out deltas, take the inbox, plan, launch); with it, planning and
// applying overlap the device, and the period approaches the device time.
// The same requests, closed loop, are run each way; tokens are checked equal.
//
//   tern-engine-overlap-bench [--seqs 64] [--tokens 128] [--device-us 250,1000] [--json PATH]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "bench/host_info.h"
#include "nlohmann/json.hpp"
#include "scheduler/engine.h"
#include "tests/scheduler/fake_model_runner.h"
#include "tools/common/tool_flags.h"

namespace {

using Clock = std::chrono::steady_clock;
using tern::runtime::KvCacheLayout;
using tern::runtime::StepPlan;
using tern::runtime::StepResult;
using tern::scheduler::ChoiceDelta;
using tern::scheduler::Engine;
using tern::scheduler::EngineOptions;
using tern::scheduler::EngineRequest;
using tern::scheduler::RequestSink;
using tern::scheduler::RequestUsage;
using tern::scheduler::testing::FakeModelRunner;

// The fake runner as a device that takes `device_us` a step: Launch computes
// the result at once (the fake's own cost counts as device time), Collect
// waits until `device_us` after the launch began.
class SimulatedDevice final : public tern::runtime::ModelRunner {
 public:
  SimulatedDevice(int32_t num_blocks, int32_t block_size, std::chrono::microseconds device)
      : fake_(num_blocks, block_size, 32000, 1 << 16), device_(device) {
    fake_.set_record(false);
  }
  absl::StatusOr<StepResult> Execute(const StepPlan& plan) override {
    if (absl::Status launched = Launch(plan); !launched.ok()) {
      (void)Collect();
      return launched;
    }
    return Collect();
  }
  absl::Status Launch(const StepPlan& plan) override {
    ready_at_ = Clock::now() + device_;
    return fake_.Launch(plan);
  }
  absl::StatusOr<StepResult> Collect() override {
    while (Clock::now() < ready_at_) {
    }
    return fake_.Collect();
  }
  KvCacheLayout kv_cache_layout() const override { return fake_.kv_cache_layout(); }
  int64_t vocab_size() const override { return fake_.vocab_size(); }
  int64_t max_context_length() const override { return fake_.max_context_length(); }

 private:
  FakeModelRunner fake_;
  const std::chrono::microseconds device_;
  Clock::time_point ready_at_;
};

class CountingSink final : public RequestSink {
 public:
  void OnDeltas(const std::vector<ChoiceDelta>& deltas) override {
    absl::MutexLock lock(&mu_);
    for (const ChoiceDelta& d : deltas) tokens_.insert(tokens_.end(), d.token_ids.begin(), d.token_ids.end());
  }
  void OnDone(const absl::Status& status, const RequestUsage&) override {
    ok_ = status.ok();
    done_.Notify();
  }
  void Wait() { done_.WaitForNotification(); }
  bool ok() const { return ok_; }
  std::vector<int32_t> tokens() {
    absl::MutexLock lock(&mu_);
    return tokens_;
  }

 private:
  absl::Mutex mu_;
  std::vector<int32_t> tokens_;
  std::atomic<bool> ok_{false};
  absl::Notification done_;
};

struct Run {
  double seconds = 0;
  int64_t steps = 0, planned_ahead = 0, tokens = 0;
  std::vector<std::vector<int32_t>> outputs;
};

Run RunOnce(int32_t seqs, int32_t tokens, std::chrono::microseconds device, bool async) {
  constexpr int32_t kBlockSize = 16, kPrompt = 16;
  const int32_t blocks = seqs * ((kPrompt + tokens) / kBlockSize + 2);
  EngineOptions options;
  options.model_name = "bench";
  options.max_num_seqs = seqs;
  options.async_scheduling = async;
  auto engine = Engine::Create(options, std::make_unique<SimulatedDevice>(blocks, kBlockSize, device));
  if (!engine.ok()) {
    std::fprintf(stderr, "tern-engine-overlap-bench: %s\n", std::string(engine.status().message()).c_str());
    std::exit(1);
  }
  std::vector<std::shared_ptr<CountingSink>> sinks;
  const auto start = Clock::now();
  for (int32_t i = 0; i < seqs; ++i) {
    EngineRequest r;
    r.request_id = "r" + std::to_string(i);
    for (int32_t p = 0; p < kPrompt; ++p) r.prompt_token_ids.push_back(1 + (i * 131 + p * 17) % 31000);
    r.sampling.temperature = 0;
    r.sampling.max_tokens = tokens;
    r.sampling.ignore_eos = true;
    sinks.push_back(std::make_shared<CountingSink>());
    if (!(*engine)->Submit(std::move(r), sinks.back()).ok()) std::exit(1);
  }
  Run run;
  for (auto& sink : sinks) {
    sink->Wait();
    if (!sink->ok()) std::exit(1);
    run.outputs.push_back(sink->tokens());
    run.tokens += int64_t(run.outputs.back().size());
  }
  run.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const auto stats = (*engine)->Stats();
  run.steps = stats.steps;
  run.planned_ahead = stats.steps_planned_ahead;
  return run;
}


}  // namespace

int main(int argc, char** argv) {
  int32_t seqs = 64, tokens = 128;
  std::vector<int64_t> device_us = {250, 1000};
  std::string json_path;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--seqs") seqs = std::atoi(value.c_str());
    else if (flag == "--tokens") tokens = std::atoi(value.c_str());
    else if (flag == "--device-us") {
      const auto list = tern::tools::ParsePositiveList(value);
      if (!list.has_value()) {
        std::fprintf(stderr, "tern-engine-overlap-bench: --device-us: \"%s\" is not a list of positive integers\n",
                     value.c_str());
        return 2;
      }
      device_us = *list;
    }
    else if (flag == "--json") json_path = value;
    else {
      std::fprintf(stderr, "tern-engine-overlap-bench: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  nlohmann::json report = {{"cpu", tern::bench::CpuModelName()}, {"seqs", seqs}, {"tokens", tokens}, {"rows", {}}};
  std::printf("%d sequences x %d tokens, closed loop, simulated device\n", seqs, tokens);
  std::printf("%10s | %14s %14s | %14s %14s | %8s %12s\n", "device us", "plain us/step", "host us/step",
              "async us/step", "host us/step", "speed-up", "planned ahead");
  for (int64_t us : device_us) {
    const std::chrono::microseconds device(us);
    RunOnce(seqs, 8, device, false);  // warm the allocator and threads
    const Run plain = RunOnce(seqs, tokens, device, false);
    const Run async = RunOnce(seqs, tokens, device, true);
    if (async.outputs != plain.outputs) {
      std::fprintf(stderr, "tern-engine-overlap-bench: async scheduling changed the tokens\n");
      return 1;
    }
    const double plain_us = plain.seconds * 1e6 / double(plain.steps);
    const double async_us = async.seconds * 1e6 / double(async.steps);
    std::printf("%10lld | %14.1f %14.1f | %14.1f %14.1f | %7.2fx %6lld of %lld\n", (long long)us, plain_us,
                plain_us - double(us), async_us, async_us - double(us), plain_us / async_us,
                (long long)async.planned_ahead, (long long)async.steps);
    report["rows"].push_back({{"device_us", us},
                              {"plain_us_per_step", plain_us},
                              {"async_us_per_step", async_us},
                              {"plain_steps", plain.steps},
                              {"async_steps", async.steps},
                              {"async_steps_planned_ahead", async.planned_ahead},
                              {"tokens", plain.tokens}});
  }
  if (!json_path.empty()) std::ofstream(json_path) << report.dump(2) << "\n";
  return 0;
}
