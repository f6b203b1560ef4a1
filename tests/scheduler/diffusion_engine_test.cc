// The diffusion engine on the demo DiT (CPU): step-level continuous batching
// gives each request the images it gets alone and the ones the synchronous
// DitPipeline makes (bitwise); progress every step; cancel, deadlines, queue
// bounds, drain, bad requests; sinks run off the engine thread.
#include "scheduler/diffusion_engine.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "runtime/dit/cpu_dit_ops.h"
#include "runtime/dit/diffusion_runner.h"
#include "runtime/dit/dit_pipeline.h"

namespace tern::scheduler {
namespace {

const char kDemoDit[] = TERN_MODELS_DIR "/tern-demo-dit";

// The real DitRunner, with a gate a test may close (Step waits at it) and a
// record of the thread that steps and of the batch sizes.
class GatedRunner final : public runtime::DiffusionRunner {
 public:
  explicit GatedRunner(std::unique_ptr<runtime::DiffusionRunner> inner) : inner_(std::move(inner)) {}
  const runtime::DitConfig& config() const override { return inner_->config(); }
  const runtime::NoiseSchedule& schedule() const override { return inner_->schedule(); }
  absl::Status Step(absl::Span<runtime::DenoisingSample* const> samples) override {
    {
      absl::MutexLock lock(&mu_);
      step_thread_ = std::this_thread::get_id();
      max_batch_ = std::max<int>(max_batch_, static_cast<int>(samples.size()));
      ++steps_entered_;
      changed_.SignalAll();
      while (!open_) changed_.Wait(&mu_);
    }
    return inner_->Step(samples);
  }
  void SetOpen(bool open) {
    absl::MutexLock lock(&mu_);
    open_ = open;
    changed_.SignalAll();
  }
  void AwaitStepsEntered(int n) {
    absl::MutexLock lock(&mu_);
    while (steps_entered_ < n) changed_.Wait(&mu_);
  }
  std::thread::id step_thread() {
    absl::MutexLock lock(&mu_);
    return step_thread_;
  }
  int max_batch() {
    absl::MutexLock lock(&mu_);
    return max_batch_;
  }

 private:
  std::unique_ptr<runtime::DiffusionRunner> inner_;
  absl::Mutex mu_;
  absl::CondVar changed_;
  bool open_ = true;
  int steps_entered_ = 0;
  int max_batch_ = 0;
  std::thread::id step_thread_;
};

class RecordingSink final : public DiffusionSink {
 public:
  void OnProgress(const DiffusionProgress& p) override {
    absl::MutexLock lock(&mu_);
    progress_.push_back(p);
    threads_.push_back(std::this_thread::get_id());
    changed_.SignalAll();
  }
  void OnImages(std::vector<runtime::DitImage> images) override {
    absl::MutexLock lock(&mu_);
    images_ = std::move(images);
    threads_.push_back(std::this_thread::get_id());
  }
  void OnDone(const absl::Status& status, const DiffusionUsage& usage) override {
    absl::MutexLock lock(&mu_);
    status_ = status;
    usage_ = usage;
    done_ = true;
    threads_.push_back(std::this_thread::get_id());
    changed_.SignalAll();
  }
  absl::Status Wait() {
    absl::MutexLock lock(&mu_);
    while (!done_) changed_.Wait(&mu_);
    return status_;
  }
  void AwaitProgress(size_t n) {
    absl::MutexLock lock(&mu_);
    while (progress_.size() < n && !done_) changed_.Wait(&mu_);
  }

  // Read by the test after Wait (OnDone is the sink's last call).
  absl::Mutex mu_;
  absl::CondVar changed_;
  std::vector<DiffusionProgress> progress_;
  std::vector<runtime::DitImage> images_;
  std::vector<std::thread::id> threads_;
  DiffusionUsage usage_;
  absl::Status status_;
  bool done_ = false;
};

DiffusionRequest Request(const std::string& id, int32_t label, runtime::DiffusionSamplerKind sampler, int32_t steps,
                         double guidance, uint64_t seed, int32_t images = 1) {
  DiffusionRequest r;
  r.request_id = id;
  r.params.class_label = label;
  r.params.sampler = sampler;
  r.params.num_steps = steps;
  r.params.guidance_scale = guidance;
  r.params.seed = seed;
  r.num_images = images;
  return r;
}

class DiffusionEngineTest : public ::testing::Test {
 protected:
  void Start(DiffusionEngineOptions options = {}) {
    auto inner = runtime::DitRunner::Create(kDemoDit, std::make_unique<runtime::CpuDitOps>());
    ASSERT_TRUE(inner.ok()) << inner.status();
    auto runner = std::make_unique<GatedRunner>(std::move(*inner));
    runner_ = runner.get();
    options.model_name = "tern-demo-dit";
    auto engine = DiffusionEngine::Create(options, std::move(runner));
    ASSERT_TRUE(engine.ok()) << engine.status();
    engine_ = std::move(*engine);
  }

  std::shared_ptr<RecordingSink> Submit(DiffusionRequest request) {
    auto sink = std::make_shared<RecordingSink>();
    const absl::Status status = engine_->Submit(std::move(request), sink);
    EXPECT_TRUE(status.ok()) << status;
    return sink;
  }

  // The same request through the synchronous pipeline on its own model.
  std::vector<runtime::DitImage> PipelineImages(const DiffusionRequest& r) {
    runtime::CpuDitOps ops;
    auto model = runtime::DitModel::Load(kDemoDit, &ops);
    EXPECT_TRUE(model.ok()) << model.status();
    auto pipeline = runtime::DitPipeline::Create(model->get());
    runtime::DitGenerateRequest g;
    g.class_label = r.params.class_label;
    g.num_images = r.num_images;
    g.sampler = r.params.sampler;
    g.num_steps = r.params.num_steps;
    g.guidance_scale = r.params.guidance_scale;
    g.seed = r.params.seed;
    auto images = (*pipeline)->Generate(g);
    EXPECT_TRUE(images.ok()) << images.status();
    return images.ok() ? *images : std::vector<runtime::DitImage>{};
  }

  GatedRunner* runner_ = nullptr;
  std::unique_ptr<DiffusionEngine> engine_;
};

void ExpectSameImages(const std::vector<runtime::DitImage>& a, const std::vector<runtime::DitImage>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].seed, b[i].seed);
    EXPECT_EQ(a[i].pixels, b[i].pixels) << "image " << i;
    EXPECT_EQ(a[i].sample, b[i].sample) << "image " << i;  // bitwise
  }
}

TEST_F(DiffusionEngineTest, RequestGivesTheSameImagesAloneBatchedAndThroughThePipeline) {
  using runtime::DiffusionSamplerKind;
  Start();
  const DiffusionRequest a = Request("a", 7, DiffusionSamplerKind::kDpmSolverPp2m, 4, 2.0, 11, 2);
  auto alone = Submit(a);
  ASSERT_TRUE(alone->Wait().ok());
  EXPECT_EQ(runner_->max_batch(), 2);
  ExpectSameImages(alone->images_, PipelineImages(a));

  // Now `a` joins a batch that is already two steps into a longer request,
  // next to a request with another sampler, no guidance, other class.
  auto b = Submit(Request("b", 3, DiffusionSamplerKind::kDdim, 6, 1.5, 99));
  b->AwaitProgress(2);
  auto batched = Submit(a);
  auto c = Submit(Request("c", 1, DiffusionSamplerKind::kEuler, 3, 1.0, 5));
  ASSERT_TRUE(batched->Wait().ok());
  ASSERT_TRUE(b->Wait().ok());
  ASSERT_TRUE(c->Wait().ok());
  EXPECT_GE(runner_->max_batch(), 3) << "the requests never shared a step";
  ExpectSameImages(batched->images_, alone->images_);
  // b's last steps ran without a: still its own images.
  ExpectSameImages(b->images_, PipelineImages(Request("b", 3, DiffusionSamplerKind::kDdim, 6, 1.5, 99)));
  EXPECT_EQ(batched->usage_.images, 2);
  EXPECT_EQ(batched->usage_.steps, 4);
}

TEST_F(DiffusionEngineTest, ProgressEveryStepAndSinksOffTheEngineThread) {
  Start();
  auto sink = Submit(Request("p", 2, runtime::DiffusionSamplerKind::kEuler, 3, 1.0, 1));
  ASSERT_TRUE(sink->Wait().ok());
  ASSERT_EQ(sink->progress_.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(sink->progress_[i].step, i + 1);
    EXPECT_EQ(sink->progress_[i].total_steps, 3);
  }
  ASSERT_EQ(sink->images_.size(), 1u);
  EXPECT_EQ(sink->images_[0].pixels.size(), 32u * 32u);
  for (std::thread::id id : sink->threads_) EXPECT_NE(id, runner_->step_thread());
  // The demo's config names its classes (input.classes), label order.
  ASSERT_EQ(engine_->config().class_names.size(), 10u);
  EXPECT_EQ(engine_->config().class_names[7], "Sneaker");
  EXPECT_EQ(engine_->Stats().images, 1);
  EXPECT_EQ(engine_->Stats().steps, 3);
}

TEST_F(DiffusionEngineTest, CancelFreesTheSlotAtTheNextStep) {
  DiffusionEngineOptions options;
  options.max_batch_rows = 1;
  Start(options);
  auto long_one = Submit(Request("long", 0, runtime::DiffusionSamplerKind::kDdim, 1000, 1.0, 1));
  long_one->AwaitProgress(1);
  auto next = Submit(Request("next", 0, runtime::DiffusionSamplerKind::kDdim, 2, 1.0, 2));
  engine_->Cancel({kDefaultTenantName, "long"});
  EXPECT_EQ(long_one->Wait().code(), absl::StatusCode::kCancelled);
  ASSERT_TRUE(next->Wait().ok());
  EXPECT_LT(long_one->progress_.size(), 1000u);
  EXPECT_TRUE(long_one->images_.empty());
}

// Requests are keyed by (tenant, id): another tenant may use the same id at
// once, and a cancel reaches only the request of the tenant it names.
TEST_F(DiffusionEngineTest, TenantsKeepTheirOwnRequestIds) {
  Start();
  Tenant acme, beta;
  acme.name = "acme";
  beta.name = "beta";
  runner_->SetOpen(false);
  DiffusionRequest a = Request("same", 1, runtime::DiffusionSamplerKind::kDdim, 3, 1.0, 5);
  a.tenant = &acme;
  DiffusionRequest b = Request("same", 2, runtime::DiffusionSamplerKind::kDdim, 1000, 1.0, 6);
  b.tenant = &beta;
  const DiffusionRequest reference = Request("ref", 1, runtime::DiffusionSamplerKind::kDdim, 3, 1.0, 5);
  auto acme_sink = Submit(std::move(a));
  auto beta_sink = Submit(std::move(b));
  DiffusionRequest again = Request("same", 1, runtime::DiffusionSamplerKind::kDdim, 3, 1.0, 5);
  again.tenant = &acme;
  const absl::Status dup = engine_->Submit(std::move(again), std::make_shared<RecordingSink>());
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists) << dup;
  engine_->Cancel({kDefaultTenantName, "same"});
  engine_->Cancel({"beta", "same"});
  runner_->SetOpen(true);
  EXPECT_EQ(beta_sink->Wait().code(), absl::StatusCode::kCancelled);
  ASSERT_TRUE(acme_sink->Wait().ok()) << acme_sink->status_;
  ExpectSameImages(acme_sink->images_, PipelineImages(reference));
}

TEST_F(DiffusionEngineTest, DeadlinePassedFailsTheRequest) {
  Start();
  DiffusionRequest r = Request("late", 0, runtime::DiffusionSamplerKind::kDdim, 1000, 1.0, 1);
  r.deadline = absl::Now() + absl::Milliseconds(200);
  auto sink = Submit(std::move(r));
  EXPECT_EQ(sink->Wait().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(DiffusionEngineTest, QueueBoundAnswersResourceExhausted) {
  DiffusionEngineOptions options;
  options.max_batch_rows = 1;
  options.max_queued_requests = 1;
  Start(options);
  runner_->SetOpen(false);
  auto first = Submit(Request("1", 0, runtime::DiffusionSamplerKind::kDdim, 1, 1.0, 1));
  runner_->AwaitStepsEntered(1);  // running, not waiting
  auto second = Submit(Request("2", 0, runtime::DiffusionSamplerKind::kDdim, 1, 1.0, 2));
  absl::Status third = engine_->Submit(Request("3", 0, runtime::DiffusionSamplerKind::kDdim, 1, 1.0, 3),
                                       std::make_shared<RecordingSink>());
  EXPECT_EQ(third.code(), absl::StatusCode::kResourceExhausted) << third;
  absl::Status dup = engine_->Submit(Request("1", 0, runtime::DiffusionSamplerKind::kDdim, 1, 1.0, 3),
                                     std::make_shared<RecordingSink>());
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists) << dup;
  runner_->SetOpen(true);
  EXPECT_TRUE(first->Wait().ok());
  EXPECT_TRUE(second->Wait().ok());
}

TEST_F(DiffusionEngineTest, BadRequestsNameTheField) {
  DiffusionEngineOptions options;
  options.max_batch_rows = 4;
  options.max_images_per_request = 3;
  Start(options);
  using runtime::DiffusionSamplerKind;
  const struct {
    DiffusionRequest request;
    const char* field;
  } cases[] = {
      {Request("x", 11, DiffusionSamplerKind::kDdim, 2, 1.0, 1), "class_label"},
      {Request("x", -1, DiffusionSamplerKind::kDdim, 2, 1.0, 1), "class_label"},
      {Request("x", 1, DiffusionSamplerKind::kDdim, 0, 1.0, 1), "steps"},
      {Request("x", 1, DiffusionSamplerKind::kDdim, 100000, 1.0, 1), "steps"},
      {Request("x", 1, DiffusionSamplerKind::kDdim, 2, std::nan(""), 1), "guidance_scale"},
      {Request("x", 1, DiffusionSamplerKind::kDdim, 2, 1.0, 1, 4), "num_images"},
      {Request("x", 1, DiffusionSamplerKind::kDdim, 2, 2.0, 1, 3), "num_images"},  // 6 rows > 4
  };
  for (const auto& c : cases) {
    const absl::Status status = engine_->Submit(c.request, std::make_shared<RecordingSink>());
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_NE(status.message().find(c.field), std::string::npos) << status;
  }
  // The null class is a valid label (unconditional).
  auto sink = Submit(Request("null", 10, DiffusionSamplerKind::kDdim, 1, 1.0, 1));
  EXPECT_TRUE(sink->Wait().ok());
}

TEST_F(DiffusionEngineTest, DrainFailsWhatIsLeftAndRefusesNewRequests) {
  Start();
  auto sink = Submit(Request("d", 0, runtime::DiffusionSamplerKind::kDdim, 1000, 1.0, 1));
  sink->AwaitProgress(1);
  engine_->Drain(absl::ZeroDuration());
  EXPECT_EQ(sink->Wait().code(), absl::StatusCode::kUnavailable);
  const absl::Status after = engine_->Submit(Request("e", 0, runtime::DiffusionSamplerKind::kDdim, 1, 1.0, 1),
                                             std::make_shared<RecordingSink>());
  EXPECT_EQ(after.code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(engine_->Stats().stalled);
}

}  // namespace
}  // namespace tern::scheduler
