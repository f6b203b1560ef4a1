// The diffusion engine over a DiT with a DiTFastAttn plan (CPU ops): a
// request under the plan holds cache rows while it runs and gives them back
// when it finishes, is cancelled or passes its deadline (its samples leave
// the batch before its sink hears OnDone); requests with another step count
// or asking for exact attention take none; its images are the pipeline's
// under the same plan.
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "runtime/dit/cpu_dit_ops.h"
#include "runtime/dit/diffusion_runner.h"
#include "runtime/dit/dit_attention_plan.h"
#include "runtime/dit/dit_pipeline.h"
#include "scheduler/diffusion_engine.h"

namespace tern::scheduler {
namespace {

const char kDemoDit[] = TERN_MODELS_DIR "/tern-demo-dit";

class Sink final : public DiffusionSink {
 public:
  void OnProgress(const DiffusionProgress& p) override {
    absl::MutexLock lock(&mu_);
    steps_ = p.step;
  }
  void OnImages(std::vector<runtime::DitImage> images) override {
    absl::MutexLock lock(&mu_);
    images_ = std::move(images);
  }
  void OnDone(const absl::Status& status, const DiffusionUsage&) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    done_ = true;
  }
  absl::Status Wait() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&done_));
    return status_;
  }
  void AwaitSteps(int n) {
    absl::MutexLock lock(&mu_);
    const auto reached = [this, n]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return steps_ >= n || done_; };
    mu_.Await(absl::Condition(&reached));
  }
  std::vector<runtime::DitImage> images() {
    absl::MutexLock lock(&mu_);
    return images_;
  }

 private:
  absl::Mutex mu_;
  int steps_ ABSL_GUARDED_BY(mu_) = 0;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::vector<runtime::DitImage> images_ ABSL_GUARDED_BY(mu_);
};

// 40 steps: full, then reuse and window in turn.
std::shared_ptr<const runtime::DitAttentionPlan> Plan() {
  runtime::DitAttentionPlan plan;
  plan.num_steps = 40;
  plan.num_layers = 8;
  plan.window = 16;
  for (int s = 0; s < 40; ++s) {
    for (int l = 0; l < 8; ++l) {
      plan.methods.push_back(s == 0       ? runtime::DitAttentionMethod::kFull
                             : s % 2 == 1 ? runtime::DitAttentionMethod::kReuse
                                          : runtime::DitAttentionMethod::kWindow);
    }
  }
  auto config = runtime::LoadDitConfig(kDemoDit);
  EXPECT_TRUE(config.ok());
  auto parsed = runtime::ParseDitAttentionPlan(runtime::DitAttentionPlanToJson(plan), "plan", *config);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return std::make_shared<const runtime::DitAttentionPlan>(*parsed);
}

DiffusionRequest Request(const std::string& id, int32_t steps, bool exact = false) {
  DiffusionRequest r;
  r.request_id = id;
  r.params.class_label = 4;
  r.params.sampler = runtime::DiffusionSamplerKind::kDdim;
  r.params.num_steps = steps;
  r.params.guidance_scale = 2.0;
  r.params.seed = 77;
  r.params.exact_attention = exact;
  return r;
}

class DiffusionAttentionCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    runtime::DitRunnerOptions options;
    options.model.attention_plan = Plan();
    options.model.attention_cache_rows = 8;
    auto runner = runtime::DitRunner::Create(kDemoDit, std::make_unique<runtime::CpuDitOps>(), options);
    ASSERT_TRUE(runner.ok()) << runner.status();
    cache_ = (*runner)->model()->attention_cache();
    DiffusionEngineOptions engine_options;
    engine_options.model_name = "tern-demo-dit";
    engine_options.max_batch_rows = 8;
    auto engine = DiffusionEngine::Create(engine_options, *std::move(runner));
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = *std::move(engine);
  }

  std::shared_ptr<Sink> Submit(DiffusionRequest r) {
    auto sink = std::make_shared<Sink>();
    EXPECT_TRUE(engine_->Submit(std::move(r), sink).ok());
    return sink;
  }

  runtime::DitAttentionCache* cache_ = nullptr;
  std::unique_ptr<DiffusionEngine> engine_;
};

TEST_F(DiffusionAttentionCacheTest, CacheRowsAreHeldWhileRunningAndReturnedOnFinishCancelAndDeadline) {
  // Cancelled mid-run.
  auto cancelled = Submit(Request("cancelled", 40));
  cancelled->AwaitSteps(2);
  EXPECT_EQ(cache_->slots_in_use(), 2);  // one guided image: two rows
  engine_->Cancel({kDefaultTenantName, "cancelled"});
  EXPECT_EQ(cancelled->Wait().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(cache_->slots_in_use(), 0);

  // Past its deadline mid-run.
  DiffusionRequest late = Request("late", 40);
  late.deadline = absl::Now() + absl::Milliseconds(300);
  auto late_sink = Submit(late);
  EXPECT_EQ(late_sink->Wait().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(cache_->slots_in_use(), 0);

  // Finished: the pipeline's images under the same plan; exact and other
  // step counts beside it take no rows.
  auto planned = Submit(Request("planned", 40));
  auto exact = Submit(Request("exact", 40, /*exact=*/true));
  auto other = Submit(Request("other", 6));
  planned->AwaitSteps(3);
  EXPECT_EQ(cache_->slots_in_use(), 2);
  ASSERT_TRUE(planned->Wait().ok());
  ASSERT_TRUE(exact->Wait().ok());
  ASSERT_TRUE(other->Wait().ok());
  EXPECT_EQ(cache_->slots_in_use(), 0);

  runtime::CpuDitOps ops;
  runtime::DitModelOptions model_options;
  model_options.attention_plan = Plan();
  auto model = runtime::DitModel::Load(kDemoDit, &ops, model_options);
  ASSERT_TRUE(model.ok()) << model.status();
  auto pipeline = runtime::DitPipeline::Create(model->get());
  runtime::DitGenerateRequest g;
  g.class_label = 4;
  g.sampler = runtime::DiffusionSamplerKind::kDdim;
  g.num_steps = 40;
  g.guidance_scale = 2.0;
  g.seed = 77;
  auto want = (*pipeline)->Generate(g);
  ASSERT_TRUE(want.ok()) << want.status();
  ASSERT_EQ(planned->images().size(), 1u);
  EXPECT_EQ(planned->images()[0].sample, (*want)[0].sample);
  EXPECT_NE(exact->images()[0].sample, (*want)[0].sample);
}

}  // namespace
}  // namespace tern::scheduler
