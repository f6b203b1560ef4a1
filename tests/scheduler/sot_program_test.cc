// Skeleton-of-Thought as a request program on the real CPU backend with the
// demo LLM (models/tern-demo-llm), its tokenizer and chat template.
#include "scheduler/programs/sot_program.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "runtime/chat/chat_template.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/runner/llm_model_runner.h"
#include "runtime/sot/sot_prompts.h"
#include "runtime/sot/trained_router.h"
#include "runtime/tokenizer/tokenizer.h"
#include "scheduler/engine.h"

namespace tern::scheduler {
namespace {

const std::string kModelDir = std::string(TERN_MODELS_DIR) + "/tern-demo-llm";

// What a request's sink receives, in order.
class RecordingSink final : public RequestSink {
 public:
  struct Event {
    DeltaPart part;
    int32_t index;
    std::string text;
    std::vector<int32_t> tokens;
    bool finished;
  };
  void OnDeltas(const std::vector<ChoiceDelta>& deltas) override {
    absl::MutexLock lock(&mu_);
    for (const ChoiceDelta& d : deltas) {
      events_.push_back({d.part, d.index, d.text, d.token_ids,
                         d.finish_reason != runtime::FinishReason::kNone || d.aborted});
    }
  }
  void OnDone(const absl::Status& status, const RequestUsage& usage) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    usage_ = usage;
    done_.Notify();
  }
  bool WaitDone() { return done_.WaitForNotificationWithTimeout(absl::Seconds(120)); }
  std::vector<Event> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  size_t num_events() {
    absl::MutexLock lock(&mu_);
    return events_.size();
  }
  absl::Status status() {
    absl::MutexLock lock(&mu_);
    return status_;
  }
  RequestUsage usage() {
    absl::MutexLock lock(&mu_);
    return usage_;
  }
  // The concatenated tokens and text of one part.
  std::vector<int32_t> Tokens(DeltaPart part, int32_t index) {
    std::vector<int32_t> out;
    for (const Event& e : events()) {
      if (e.part == part && e.index == index) out.insert(out.end(), e.tokens.begin(), e.tokens.end());
    }
    return out;
  }
  std::string Text(DeltaPart part, int32_t index) {
    std::string out;
    for (const Event& e : events()) {
      if (e.part == part && e.index == index) out += e.text;
    }
    return out;
  }

 private:
  absl::Mutex mu_;
  absl::Notification done_;
  std::vector<Event> events_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  RequestUsage usage_ ABSL_GUARDED_BY(mu_);
};

class SotProgramTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto tokenizer = runtime::Tokenizer::FromModelDirectory(kModelDir);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = *std::move(tokenizer);
    auto chat = runtime::LoadChatTemplateConfig(kModelDir);
    ASSERT_TRUE(chat.ok()) << chat.status();
    chat_ = std::make_unique<runtime::ChatTemplateConfig>(*std::move(chat));
    config_.tokenizer = tokenizer_.get();
    config_.chat_template = chat_.get();
    config_.router = SotRouterKind::kNone;
  }

  std::unique_ptr<Engine> MakeEngine(int32_t num_blocks = 512) {
    runtime::LlmModelRunnerOptions o;
    o.model_dir = kModelDir;
    o.block_size = 16;
    o.num_blocks = num_blocks;
    auto runner = runtime::LlmModelRunner::Create(std::make_unique<runtime::CpuBackend>(), o);
    EXPECT_TRUE(runner.ok()) << runner.status();
    EngineOptions options;
    options.model_name = "tern-demo-llm";
    options.tokenizer = tokenizer_.get();
    auto engine = Engine::Create(options, *std::move(runner));
    EXPECT_TRUE(engine.ok()) << engine.status();
    return *std::move(engine);
  }

  EngineRequest Request(const std::string& id, const std::string& question, int32_t max_tokens) {
    EngineRequest r;
    r.request_id = id;
    r.prompt_token_ids = tokenizer_->Encode("Question: " + question + "\nAnswer:", true);
    r.sampling.temperature = 0;
    r.sampling.max_tokens = max_tokens;
    return r;
  }

  std::vector<int32_t> PointPrompt(const std::string& question, const std::vector<runtime::SkeletonPoint>& points,
                                   size_t i) {
    auto text = runtime::RenderPointPrompt(chat_.get(), config_.templates, {}, question,
                                           runtime::FormatSkeleton(points), points[i]);
    EXPECT_TRUE(text.ok()) << text.status();
    return tokenizer_->Encode(*text, /*add_special_tokens=*/false);
  }

  std::unique_ptr<runtime::Tokenizer> tokenizer_;
  std::unique_ptr<runtime::ChatTemplateConfig> chat_;
  SotConfig config_;
};

const std::vector<std::string> kOutline = {"Where tea comes from", "How green tea is made", "How black tea differs"};
const char kQuestion[] = "How is tea made?";

TEST_F(SotProgramTest, OutlinePointsEqualSeparateRequestsWithTheSamePrompts) {
  auto engine = MakeEngine();
  SotRequest sot;
  sot.question = kQuestion;
  sot.outline = kOutline;
  auto outcome = std::make_shared<SotOutcome>();
  EngineRequest request = Request("sot", kQuestion, 3 * 12);
  request.program = std::make_unique<SotProgram>(&config_, sot, outcome);
  auto sink = std::make_shared<RecordingSink>();
  ASSERT_TRUE(engine->Submit(std::move(request), sink).ok());
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_TRUE(sink->status().ok()) << sink->status();
  ASSERT_TRUE(outcome->used_sot);
  ASSERT_EQ(outcome->points.size(), 3u);
  EXPECT_EQ(outcome->decision, SotDecision::kNotRouted);

  std::vector<std::string> expansions;
  int32_t prompt_tokens = 0, completion_tokens = 0;
  size_t shared = SIZE_MAX;
  std::vector<int32_t> first_prompt;
  for (size_t i = 0; i < 3; ++i) {
    // The same prompt as a plain request, alone on a fresh engine.
    std::vector<int32_t> prompt = PointPrompt(kQuestion, outcome->points, i);
    if (i == 0) first_prompt = prompt;
    shared = std::min<size_t>(
        shared, std::mismatch(prompt.begin(), prompt.end(), first_prompt.begin(), first_prompt.end()).first -
                    prompt.begin());
    auto alone_engine = MakeEngine();
    EngineRequest alone;
    alone.request_id = "alone";
    alone.prompt_token_ids = prompt;
    alone.sampling.temperature = 0;
    alone.sampling.max_tokens = 12;
    auto alone_sink = std::make_shared<RecordingSink>();
    ASSERT_TRUE(alone_engine->Submit(std::move(alone), alone_sink).ok());
    ASSERT_TRUE(alone_sink->WaitDone());
    const std::vector<int32_t> expected = alone_sink->Tokens(DeltaPart::kAnswer, 0);
    EXPECT_EQ(sink->Tokens(DeltaPart::kPoint, int32_t(i)), expected) << "point " << i;
    const std::string expansion = alone_sink->Text(DeltaPart::kAnswer, 0);
    expansions.push_back(expansion);
    // The point's stream opens with its pre-fill.
    EXPECT_EQ(sink->Text(DeltaPart::kPoint, int32_t(i)).rfind(absl::StrCat(i + 1, ". ", kOutline[i], " "), 0), 0u);
    prompt_tokens += int32_t(prompt.size());
    completion_tokens += int32_t(expected.size());
  }
  EXPECT_EQ(outcome->answer, runtime::JoinPoints(outcome->points, expansions));
  // Usage: the shared prefix once, each point's own prompt tokens, all outputs.
  ASSERT_GT(shared, 16u);
  EXPECT_EQ(sink->usage().prompt_tokens, prompt_tokens - 2 * int32_t(shared));
  EXPECT_EQ(sink->usage().completion_tokens, completion_tokens);
  EXPECT_EQ(engine->Stats().kv_blocks_used, 0);
}

TEST_F(SotProgramTest, OrderedStreamingHoldsPointsUntilEarlierOnesFinish) {
  auto engine = MakeEngine();
  SotRequest sot;
  sot.question = kQuestion;
  sot.outline = kOutline;
  sot.ordered = true;
  auto outcome = std::make_shared<SotOutcome>();
  EngineRequest request = Request("ordered", kQuestion, 3 * 10);
  request.program = std::make_unique<SotProgram>(&config_, sot, outcome);
  auto sink = std::make_shared<RecordingSink>();
  ASSERT_TRUE(engine->Submit(std::move(request), sink).ok());
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_TRUE(sink->status().ok());
  int32_t current = 0;
  bool current_done = false;
  for (const auto& e : sink->events()) {
    ASSERT_EQ(e.part, DeltaPart::kPoint);
    if (e.index != current) {
      ASSERT_TRUE(current_done) << "point " << e.index << " streamed before point " << current << " finished";
      ASSERT_EQ(e.index, current + 1);
      current = e.index;
      current_done = false;
    }
    current_done = current_done || e.finished;
  }
  EXPECT_EQ(current, 2);
}

TEST_F(SotProgramTest, CancelMidExpansionFreesEveryBlock) {
  auto engine = MakeEngine();
  SotRequest sot;
  sot.question = kQuestion;
  sot.outline = kOutline;
  sot.max_point_tokens = 400;
  auto outcome = std::make_shared<SotOutcome>();
  EngineRequest request = Request("cancel", kQuestion, 1200);
  request.sampling.ignore_eos = true;
  request.program = std::make_unique<SotProgram>(&config_, sot, outcome);
  auto sink = std::make_shared<RecordingSink>();
  ASSERT_TRUE(engine->Submit(std::move(request), sink).ok());
  while (sink->num_events() < 6) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_GT(engine->Stats().kv_blocks_used, 0);
  engine->Cancel({kDefaultTenantName, "cancel"});
  ASSERT_TRUE(sink->WaitDone());
  EXPECT_TRUE(sink->status().ok());
  EXPECT_EQ(engine->Stats().kv_blocks_used, 0);
  std::map<int32_t, bool> aborted;
  for (const auto& e : sink->events()) aborted[e.index] = aborted[e.index] || e.finished;
  EXPECT_EQ(aborted.size(), 3u);
  for (const auto& [index, ended] : aborted) EXPECT_TRUE(ended) << "point " << index << " never ended";
}

TEST_F(SotProgramTest, SkeletonPhaseStreamsTheOutlineThenPointsOrFallsBack) {
  auto engine = MakeEngine();
  SotRequest sot;
  sot.question = "What are the benefits of exercise?";
  auto outcome = std::make_shared<SotOutcome>();
  EngineRequest request = Request("skeleton", sot.question, 120);
  request.program = std::make_unique<SotProgram>(&config_, sot, outcome);
  auto sink = std::make_shared<RecordingSink>();
  ASSERT_TRUE(engine->Submit(std::move(request), sink).ok());
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_TRUE(sink->status().ok()) << sink->status();
  const std::string skeleton = sink->Text(DeltaPart::kSkeleton, 0);
  EXPECT_EQ(skeleton.rfind("1.", 0), 0u) << skeleton;
  EXPECT_EQ(outcome->skeleton, skeleton);
  const std::vector<runtime::SkeletonPoint> parsed = runtime::ParseSkeleton(outcome->skeleton);
  if (parsed.size() >= 2) {
    EXPECT_TRUE(outcome->used_sot);
    EXPECT_EQ(outcome->points.size(), std::min<size_t>(parsed.size(), config_.max_points));
    EXPECT_FALSE(sink->Tokens(DeltaPart::kPoint, 0).empty());
  } else {
    EXPECT_TRUE(outcome->fell_back);
    EXPECT_FALSE(sink->Tokens(DeltaPart::kAnswer, 0).empty());
  }
  // max_tokens bounds skeleton and points together; the skeleton takes at most half.
  EXPECT_LE(sink->usage().completion_tokens, 120);
  EXPECT_LE(int32_t(sink->Tokens(DeltaPart::kSkeleton, 0).size()), 60);
  EXPECT_GT(outcome->skeleton_time, absl::ZeroDuration());
}

TEST_F(SotProgramTest, FewerThanTwoPointsFallsBackToTheOriginalRequest) {
  // A skeleton budget of 1 token cannot write a second point.
  config_.max_skeleton_tokens = 1;
  auto engine = MakeEngine();
  SotRequest sot;
  sot.question = kQuestion;
  auto outcome = std::make_shared<SotOutcome>();
  EngineRequest request = Request("fallback", kQuestion, 9);
  const std::vector<int32_t> original = request.prompt_token_ids;
  request.program = std::make_unique<SotProgram>(&config_, sot, outcome);
  auto sink = std::make_shared<RecordingSink>();
  ASSERT_TRUE(engine->Submit(std::move(request), sink).ok());
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_TRUE(sink->status().ok());
  EXPECT_TRUE(outcome->fell_back);
  EXPECT_FALSE(outcome->used_sot);
  // The answer is the original request's, with what the skeleton left of max_tokens.
  auto plain_sink = std::make_shared<RecordingSink>();
  EngineRequest plain = Request("plain", kQuestion, 8);
  ASSERT_TRUE(engine->Submit(std::move(plain), plain_sink).ok());
  ASSERT_TRUE(plain_sink->WaitDone());
  EXPECT_EQ(sink->Tokens(DeltaPart::kAnswer, 0), plain_sink->Tokens(DeltaPart::kAnswer, 0));
}

TEST_F(SotProgramTest, AutoWithTheTrainedRouterRoutesByTheQuestion) {
  auto router = runtime::TrainedRouter::Load(std::string(TERN_MODELS_DIR) + "/sot-router/router.json");
  ASSERT_TRUE(router.ok()) << router.status();
  config_.router = SotRouterKind::kTrained;
  config_.trained_router = router->get();
  auto engine = MakeEngine();
  for (const std::string question : {"What are the main differences between Python and JavaScript?",
                                     "Solve for x in the equation 3x + 10 = 5x - 10."}) {
    SotRequest sot;
    sot.automatic = true;
    sot.question = question;
    auto outcome = std::make_shared<SotOutcome>();
    EngineRequest request = Request("auto", question, 40);
    request.program = std::make_unique<SotProgram>(&config_, sot, outcome);
    auto sink = std::make_shared<RecordingSink>();
    ASSERT_TRUE(engine->Submit(std::move(request), sink).ok());
    ASSERT_TRUE(sink->WaitDone());
    ASSERT_TRUE(sink->status().ok());
    EXPECT_EQ(outcome->router, "trained");
    const bool suits = (*router)->SuitsSot(question);
    EXPECT_EQ(outcome->decision, suits ? SotDecision::kSot : SotDecision::kNormal) << question;
    if (!suits) {
      EXPECT_FALSE(outcome->used_sot);
      EXPECT_FALSE(sink->Tokens(DeltaPart::kAnswer, 0).empty());
    } else {
      EXPECT_FALSE(sink->Text(DeltaPart::kSkeleton, 0).empty());
    }
  }
}

TEST_F(SotProgramTest, AutoWithThePromptRouterAsksTheServedModel) {
  config_.router = SotRouterKind::kPrompt;
  auto engine = MakeEngine();
  SotRequest sot;
  sot.automatic = true;
  sot.question = kQuestion;
  auto outcome = std::make_shared<SotOutcome>();
  EngineRequest request = Request("prompt-router", kQuestion, 30);
  request.program = std::make_unique<SotProgram>(&config_, sot, outcome);
  auto sink = std::make_shared<RecordingSink>();
  ASSERT_TRUE(engine->Submit(std::move(request), sink).ok());
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_TRUE(sink->status().ok());
  EXPECT_EQ(outcome->router, "prompt");
  EXPECT_GT(outcome->router_time, absl::ZeroDuration());
  EXPECT_NE(outcome->decision, SotDecision::kNotRouted);
  // Usage counts the router's decode as well as the answer's.
  EXPECT_GT(sink->usage().completion_tokens, int32_t(sink->Tokens(DeltaPart::kAnswer, 0).size()));
  // Nothing of the router phase reaches the client.
  for (const auto& e : sink->events()) {
    EXPECT_TRUE(e.part != DeltaPart::kAnswer || outcome->decision == SotDecision::kNormal);
  }
}

TEST_F(SotProgramTest, APointsPhaseThatCannotFitTheCacheFailsOnlyItsRequest) {
  auto engine = MakeEngine(/*num_blocks=*/40);  // 640 positions
  SotRequest sot;
  sot.question = kQuestion;
  for (int i = 0; i < 20; ++i) sot.outline.push_back("point number " + std::to_string(i));
  sot.max_point_tokens = 64;
  auto outcome = std::make_shared<SotOutcome>();
  EngineRequest request = Request("too-big", kQuestion, 20 * 64);
  request.sampling.max_tokens = 300;
  request.program = std::make_unique<SotProgram>(&config_, sot, outcome);
  auto sink = std::make_shared<RecordingSink>();
  auto other = std::make_shared<RecordingSink>();
  ASSERT_TRUE(engine->Submit(std::move(request), sink).ok());
  ASSERT_TRUE(engine->Submit(Request("other", kQuestion, 5), other).ok());
  ASSERT_TRUE(sink->WaitDone());
  ASSERT_TRUE(other->WaitDone());
  EXPECT_EQ(sink->status().code(), absl::StatusCode::kInvalidArgument) << sink->status();
  EXPECT_TRUE(other->status().ok());
  EXPECT_EQ(engine->Stats().kv_blocks_used, 0);
}

}  // namespace
}  // namespace tern::scheduler
