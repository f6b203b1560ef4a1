// Skeleton-of-Thought end-to-end latency against normal decoding of the same
// answer length, on one engine (the real runner, CPU or CUDA backend).
//
//   tern-sot-bench --model DIR [--backend cuda] [--dtype float16]
//                  [--points 3,6,10] [--point-tokens 64] [--skeleton-tokens 40]
//                  [--repeats 3] [--json PATH]
//
// Random weights write no usable skeleton, so the SoT run is honest in two
// parts on the same engine: a skeleton phase of --skeleton-tokens tokens
// decoded from the real skeleton prompt, then the SoT program expanding a
// supplied outline of N points of --point-tokens tokens each (ignore_eos).
// Normal decoding writes N x point-tokens tokens from the plain question
// prompt. The floor is the skeleton time plus the longest point at the
// batch-N step time, measured from N plain requests decoding together.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "bench/host_info.h"
#include "runtime/base/check.h"
#include "runtime/base/flag_names.h"
#include "nlohmann/json.hpp"
#include "runtime/backend/backend_factory.h"
#include "runtime/chat/chat_template.h"
#include "runtime/cuda/device_probe.h"
#include "runtime/runner/llm_model_runner.h"
#include "runtime/sot/sot_prompts.h"
#include "runtime/tokenizer/tokenizer.h"
#include "scheduler/engine.h"
#include "scheduler/programs/sot_program.h"

ABSL_FLAG(std::string, model, "", "Hugging Face model directory (with a tokenizer)");
ABSL_FLAG(std::string, backend, "cuda", "cpu or cuda");
ABSL_FLAG(std::string, dtype, "float16", "CUDA compute dtype");
ABSL_FLAG(std::string, points, "3,6,10", "point counts to measure");
ABSL_FLAG(int, point_tokens, 64, "tokens per point");
ABSL_FLAG(int, skeleton_tokens, 40, "tokens of the skeleton phase");
ABSL_FLAG(int, repeats, 3, "runs per measurement (the median is reported)");
ABSL_FLAG(std::string, json, "", "write the results here");

namespace {

using tern::scheduler::Engine;
using tern::scheduler::EngineRequest;
using Clock = std::chrono::steady_clock;

const char kQuestion[] = "What are the most effective ways to deal with stress?";

class TimingSink final : public tern::scheduler::RequestSink {
 public:
  void OnDeltas(const std::vector<tern::scheduler::ChoiceDelta>& deltas) override {
    for (const auto& d : deltas) {
      if (!d.token_ids.empty() && !first_token_.has_value()) first_token_ = Clock::now();
      tokens_ += static_cast<int>(d.token_ids.size());
    }
  }
  void OnDone(const absl::Status& status, const tern::scheduler::RequestUsage&) override {
    status_ = status;
    end_ = Clock::now();
    done_.Notify();
  }
  void Wait() { done_.WaitForNotification(); }
  absl::Status status_;
  std::optional<Clock::time_point> first_token_;
  Clock::time_point end_;
  int tokens_ = 0;

 private:
  absl::Notification done_;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Bench {
  Engine* engine;
  const tern::runtime::Tokenizer* tokenizer;
  const tern::runtime::ChatTemplateConfig* chat;
  tern::scheduler::SotConfig config;
  int counter = 0;

  EngineRequest Plain(const std::vector<int32_t>& prompt, int max_tokens) {
    EngineRequest r;
    r.request_id = "r" + std::to_string(counter++);
    r.prompt_token_ids = prompt;
    r.sampling.temperature = 0;
    r.sampling.max_tokens = max_tokens;
    r.sampling.ignore_eos = true;
    return r;
  }
  // Submits and waits; seconds from submit to the last message.
  double Run(EngineRequest request, TimingSink** out = nullptr) {
    auto sink = std::make_shared<TimingSink>();
    const auto start = Clock::now();
    auto status = engine->Submit(std::move(request), sink);
    CHECK(status.ok()) << status;
    sink->Wait();
    CHECK(sink->status_.ok()) << sink->status_;
    return std::chrono::duration<double>(sink->end_ - start).count();
  }
  // N plain requests decoding together: the decode time per step at batch N.
  double StepTime(const std::vector<int32_t>& prompt, int n, int tokens) {
    std::vector<std::shared_ptr<TimingSink>> sinks;
    for (int i = 0; i < n; ++i) {
      auto sink = std::make_shared<TimingSink>();
      EngineRequest r = Plain(prompt, tokens);
      r.sampling.seed = i;
      r.prompt_token_ids.push_back(100 + i);  // distinct prompts, shared prefix
      CHECK(engine->Submit(std::move(r), sink).ok());
      sinks.push_back(sink);
    }
    Clock::time_point first = Clock::time_point::max(), last = Clock::time_point::min();
    for (auto& s : sinks) {
      s->Wait();
      first = std::min(first, *s->first_token_);
      last = std::max(last, s->end_);
    }
    return std::chrono::duration<double>(last - first).count() / (tokens - 1);
  }
};

std::vector<int32_t> Encode(const Bench& b, const std::string& text) {
  return b.tokenizer->Encode(text, /*add_special_tokens=*/b.chat == nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args = tern::base::NormalizeFlagDashes(argc, argv);
  std::vector<char*> arg_ptrs;
  for (auto& arg : args) arg_ptrs.push_back(arg.data());
  absl::ParseCommandLine(int(arg_ptrs.size()), arg_ptrs.data());
  const std::string dir = absl::GetFlag(FLAGS_model);
  if (dir.empty()) {
    std::fprintf(stderr, "--model is required\n");
    return 2;
  }
  auto tokenizer = tern::runtime::Tokenizer::FromModelDirectory(dir);
  CHECK(tokenizer.ok()) << tokenizer.status();
  std::unique_ptr<tern::runtime::ChatTemplateConfig> chat;
  if (auto loaded = tern::runtime::LoadChatTemplateConfig(dir); loaded.ok()) {
    chat = std::make_unique<tern::runtime::ChatTemplateConfig>(*std::move(loaded));
  }
  tern::runtime::BackendChoice choice;
  choice.name = absl::GetFlag(FLAGS_backend);
  choice.dtype = absl::GetFlag(FLAGS_dtype);
  auto backend = tern::runtime::MakeBackend(choice);
  CHECK(backend.ok()) << backend.status();
  tern::runtime::LlmModelRunnerOptions runner_options;
  runner_options.model_dir = dir;
  runner_options.max_context_length = 4096;
  if (choice.name == "cuda") {
    runner_options.warmup_tokens = 2048;
    runner_options.warmup_graph_seqs = 16;
  }
  auto runner = tern::runtime::LlmModelRunner::Create(*std::move(backend), runner_options);
  CHECK(runner.ok()) << runner.status();
  tern::scheduler::EngineOptions engine_options;
  engine_options.model_name = "bench";
  engine_options.tokenizer = tokenizer->get();
  engine_options.max_num_seqs = 16;
  auto engine = Engine::Create(engine_options, *std::move(runner));
  CHECK(engine.ok()) << engine.status();

  Bench b{engine->get(), tokenizer->get(), chat.get(), {}};
  b.config.tokenizer = tokenizer->get();
  b.config.chat_template = chat.get();
  b.config.router = tern::scheduler::SotRouterKind::kNone;
  const int L = absl::GetFlag(FLAGS_point_tokens);
  const int S = absl::GetFlag(FLAGS_skeleton_tokens);
  const int repeats = absl::GetFlag(FLAGS_repeats);

  auto skeleton_text = tern::runtime::RenderSkeletonPrompt(chat.get(), b.config.templates, {}, kQuestion);
  CHECK(skeleton_text.ok()) << skeleton_text.status();
  const std::vector<int32_t> skeleton_prompt = Encode(b, *skeleton_text);
  const std::vector<int32_t> question_prompt = Encode(b, std::string("Question: ") + kQuestion + "\nAnswer:");
  // Warm: one of each shape.
  b.Run(b.Plain(question_prompt, 8));

  std::string device = "CPU: " + tern::bench::CpuModelName();
  if (choice.name == "cuda") {
    const auto devices = tern::runtime::ListCudaDevices();
    if (!devices.empty()) device = devices[0].name;
  }
  std::printf("tern-sot-bench on %s (%s), model %s, %d-token points, %d-token skeleton, median of %d\n",
              device.c_str(), choice.dtype.c_str(), dir.c_str(), L, S, repeats);
  std::printf("%6s %12s %12s %12s %12s %12s %9s %9s\n", "points", "normal_s", "skeleton_s", "expand_s", "sot_s",
              "floor_s", "speedup", "of_floor");
  nlohmann::json rows = nlohmann::json::array();
  for (const absl::string_view field : absl::StrSplit(absl::GetFlag(FLAGS_points), ',')) {
    int n = 0;
    CHECK(absl::SimpleAtoi(field, &n) && n >= 2) << "bad --points entry " << field;
    std::vector<double> normal, skeleton, expand, step;
    for (int r = 0; r < repeats; ++r) {
      normal.push_back(b.Run(b.Plain(question_prompt, n * L)));
      skeleton.push_back(b.Run(b.Plain(skeleton_prompt, S)));
      tern::scheduler::SotRequest sot;
      sot.question = kQuestion;
      for (int i = 0; i < n; ++i) sot.outline.push_back("Point number " + std::to_string(i + 1) + " of the answer");
      sot.max_point_tokens = L;
      EngineRequest request = b.Plain(question_prompt, n * L);
      request.program = std::make_unique<tern::scheduler::SotProgram>(
          &b.config, std::move(sot), std::make_shared<tern::scheduler::SotOutcome>());
      expand.push_back(b.Run(std::move(request)));
      step.push_back(b.StepTime(question_prompt, n, L));
    }
    const double t_normal = Median(normal), t_skel = Median(skeleton), t_exp = Median(expand);
    const double t_sot = t_skel + t_exp;
    const double floor = t_skel + L * Median(step);
    std::printf("%6d %12.4f %12.4f %12.4f %12.4f %12.4f %8.2fx %9.2f\n", n, t_normal, t_skel, t_exp, t_sot, floor,
                t_normal / t_sot, floor / t_sot);
    rows.push_back({{"points", n}, {"normal_s", t_normal}, {"skeleton_s", t_skel}, {"expansion_s", t_exp},
                    {"sot_s", t_sot}, {"floor_s", floor}, {"step_at_batch_n_s", Median(step)},
                    {"speedup", t_normal / t_sot}, {"fraction_of_floor", floor / t_sot}});
  }
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    nlohmann::json out = {{"device", device}, {"dtype", choice.dtype}, {"model", dir},
                          {"point_tokens", L}, {"skeleton_tokens", S}, {"rows", rows}};
    std::ofstream(path) << out.dump(2) << "\n";
  }
  return 0;
}
