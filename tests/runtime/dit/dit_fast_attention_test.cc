// DiTFastAttn on the demo DiT with the CPU ops: a plan of full attention
// everywhere, and window attention as wide as the image, give the exact
// images bit for bit; reuse (AST) and CFG sharing (ASC) do what they say; a
// sample gives the same image alone or batched with samples at other steps,
// under the plan or not; cache rows are held while a sample runs under a plan
// and returned when it finishes or is destroyed.
#include "runtime/dit/dit_fast_attention.h"

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/base/check.h"
#include "runtime/dit/cpu_dit_ops.h"
#include "runtime/dit/denoising.h"
#include "runtime/dit/dit_model.h"
#include "runtime/dit/dit_pipeline.h"
#include "runtime/dit/gaussian_noise.h"
#include "tests/runtime/dit/dit_golden.h"

namespace tern::runtime {
namespace {

using M = DitAttentionMethod;

// A plan of `steps` x 8 layers from `method(step, layer)`, written out and
// parsed back, so it passes the file checks.
std::shared_ptr<const DitAttentionPlan> MakePlan(int32_t steps, int32_t window,
                                                 const std::function<M(int32_t, int32_t)>& method) {
  DitAttentionPlan plan;
  plan.num_steps = steps;
  plan.num_layers = 8;
  plan.window = window;
  for (int32_t s = 0; s < steps; ++s) {
    for (int32_t l = 0; l < 8; ++l) plan.methods.push_back(method(s, l));
  }
  auto config = LoadDitConfig(dit_test::kDemoDitDir);
  CHECK(config.ok());
  auto parsed = ParseDitAttentionPlan(DitAttentionPlanToJson(plan), "test plan", *config);
  CHECK(parsed.ok()) << parsed.status();
  return std::make_shared<const DitAttentionPlan>(*std::move(parsed));
}

// Every kind of step somewhere: window, reuse and both +cfg methods.
M MixedMethod(int32_t s, int32_t l) {
  switch (s) {
    case 0: return M::kFull;
    case 1: return l % 2 ? M::kWindow : M::kFullShareCfg;
    case 2: return l % 3 == 0 ? M::kReuse : M::kWindowShareCfg;
    case 3: return l % 2 ? M::kFull : M::kReuse;
    case 4: return M::kWindow;
    default: return l % 2 ? M::kReuse : M::kFullShareCfg;
  }
}

struct Loaded {
  std::unique_ptr<CpuDitOps> ops = std::make_unique<CpuDitOps>();
  std::unique_ptr<DitModel> model;
};

Loaded Load(std::shared_ptr<const DitAttentionPlan> plan, int32_t cache_rows = 16) {
  Loaded l;
  DitModelOptions options;
  options.attention_plan = std::move(plan);
  options.attention_cache_rows = cache_rows;
  auto model = DitModel::Load(dit_test::kDemoDitDir, l.ops.get(), options);
  CHECK(model.ok()) << model.status();
  l.model = *std::move(model);
  return l;
}

DitImage GenerateOne(DitModel* model, int32_t class_label, double guidance, int32_t steps, uint64_t seed,
                     bool exact = false) {
  auto pipeline = DitPipeline::Create(model);
  CHECK(pipeline.ok());
  DitGenerateRequest r;
  r.class_label = class_label;
  r.guidance_scale = guidance;
  r.num_steps = steps;
  r.seed = seed;
  auto images = (*pipeline)->Generate(r);
  CHECK(images.ok()) << images.status();
  return (*images)[0];
}

std::unique_ptr<DenoisingSample> Sample(const DitModel& model, const NoiseSchedule* schedule, int32_t label,
                                        double guidance, int32_t steps, uint64_t seed, bool exact = false) {
  DenoisingParams p;
  p.class_label = label;
  p.guidance_scale = guidance;
  p.num_steps = steps;
  p.seed = seed;
  p.exact_attention = exact;
  auto sample = DenoisingSample::Create(model.config(), schedule, p);
  CHECK(sample.ok()) << sample.status();
  return *std::move(sample);
}

TEST(DitFastAttentionTest, AllFullPlanIsExact) {
  Loaded exact = Load(nullptr);
  Loaded full = Load(MakePlan(4, 16, [](int32_t, int32_t) { return M::kFull; }));
  for (double guidance : {1.0, 2.0}) {
    const DitImage a = GenerateOne(exact.model.get(), 3, guidance, 4, 11);
    const DitImage b = GenerateOne(full.model.get(), 3, guidance, 4, 11);
    EXPECT_EQ(a.sample, b.sample) << "guidance " << guidance;
    EXPECT_EQ(a.pixels, b.pixels);
  }
  // +cfg on an unguided sample shares nothing.
  Loaded shared = Load(MakePlan(4, 16, [](int32_t, int32_t) { return M::kFullShareCfg; }));
  EXPECT_EQ(GenerateOne(exact.model.get(), 5, 1.0, 4, 3).sample, GenerateOne(shared.model.get(), 5, 1.0, 4, 3).sample);
  EXPECT_EQ(full.model->attention_cache()->slots_in_use(), 0);
}

TEST(DitFastAttentionTest, WindowAsWideAsTheImageIsExact) {
  // 256 tokens: every key is in the band, the residual is exactly 0.
  Loaded exact = Load(nullptr);
  Loaded wide = Load(MakePlan(5, 256, [](int32_t s, int32_t) { return s == 0 ? M::kFull : M::kWindow; }));
  EXPECT_GT(wide.model->attention_cache()->bytes(), 0u);
  for (double guidance : {1.0, 3.0}) {
    EXPECT_EQ(GenerateOne(exact.model.get(), 7, guidance, 5, 2).sample,
              GenerateOne(wide.model.get(), 7, guidance, 5, 2).sample);
  }
  // A narrow band changes the image.
  Loaded narrow = Load(MakePlan(5, 8, [](int32_t s, int32_t) { return s == 0 ? M::kFull : M::kWindow; }));
  EXPECT_NE(GenerateOne(exact.model.get(), 7, 3.0, 5, 2).sample,
            GenerateOne(narrow.model.get(), 7, 3.0, 5, 2).sample);
}

class DitFastAttentionForwardTest : public ::testing::Test {
 protected:
  std::vector<float> Forward(DitModel& model, const std::vector<float>& x, const std::vector<float>& t,
                             const std::vector<int32_t>& y, const std::vector<DitRowAttention>& attention = {}) {
    std::vector<float> eps(x.size());
    const absl::Status status = model.Forward({x, t, y, attention}, absl::MakeSpan(eps));
    EXPECT_TRUE(status.ok()) << status;
    return eps;
  }
  std::vector<float> Noise(uint64_t seed, int rows) {
    std::vector<float> x;
    for (int r = 0; r < rows; ++r) {
      const std::vector<float> n = GaussianNoise(seed, 32 * 32);
      x.insert(x.end(), n.begin(), n.end());
    }
    return x;
  }
};

TEST_F(DitFastAttentionForwardTest, ReuseTakesThePreviousStepsOutput) {
  Loaded exact = Load(nullptr);
  Loaded reuse = Load(MakePlan(2, 16, [](int32_t s, int32_t) { return s == 0 ? M::kFull : M::kReuse; }));
  auto slots = reuse.model->attention_cache()->Acquire(1);
  ASSERT_TRUE(slots.ok());
  const int32_t slot = (*slots)->slot(0);
  const std::vector<float> x = Noise(1, 1), t = {600.0f};
  const std::vector<int32_t> y = {4};
  const std::vector<float> want = Forward(*exact.model, x, t, y);
  EXPECT_EQ(Forward(*reuse.model, x, t, y, {{0, slot, -1}}), want);
  // Step 1 reuses every block's attention output: with the same inputs, the
  // same eps; with other inputs, not the exact one.
  EXPECT_EQ(Forward(*reuse.model, x, t, y, {{1, slot, -1}}), want);
  const std::vector<float> x2 = Noise(2, 1);
  EXPECT_NE(Forward(*reuse.model, x2, t, y, {{1, slot, -1}}), Forward(*exact.model, x2, t, y));
}

TEST_F(DitFastAttentionForwardTest, WindowAddsTheResidualOfTheLastFullStep) {
  Loaded exact = Load(nullptr);
  Loaded window = Load(MakePlan(2, 8, [](int32_t s, int32_t) { return s == 0 ? M::kFull : M::kWindow; }));
  auto slots = window.model->attention_cache()->Acquire(1);
  ASSERT_TRUE(slots.ok());
  const int32_t slot = (*slots)->slot(0);
  const std::vector<float> x = Noise(3, 1), t = {300.0f};
  const std::vector<int32_t> y = {1};
  const std::vector<float> want = Forward(*exact.model, x, t, y);
  EXPECT_EQ(Forward(*window.model, x, t, y, {{0, slot, -1}}), want);
  // Same inputs: window + (full - window) is full up to rounding.
  const std::vector<float> again = Forward(*window.model, x, t, y, {{1, slot, -1}});
  for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(again[i], want[i], 1e-4) << i;
}

TEST_F(DitFastAttentionForwardTest, CfgSharingGivesTheUnconditionalRowTheConditionalOutput) {
  Loaded exact = Load(nullptr);
  Loaded shared = Load(MakePlan(1, 16, [](int32_t, int32_t) { return M::kFullShareCfg; }));
  auto slots = shared.model->attention_cache()->Acquire(2);
  ASSERT_TRUE(slots.ok());
  const std::vector<DitRowAttention> rows = {{0, (*slots)->slot(0), -1}, {0, (*slots)->slot(1), 0}};
  const std::vector<float> x = Noise(5, 2), t = {800.0f, 800.0f};
  const size_t n = 32 * 32;
  // The conditional row computes as always; the unconditional one takes its
  // attention output, so with its own class it differs from the exact row...
  const std::vector<float> want = Forward(*exact.model, x, t, {2, 10});
  const std::vector<float> got = Forward(*shared.model, x, t, {2, 10}, rows);
  EXPECT_TRUE(std::equal(got.begin(), got.begin() + n, want.begin()));
  EXPECT_FALSE(std::equal(got.begin() + n, got.end(), want.begin() + n));
  // ...and with the conditional row's class it is the exact row.
  EXPECT_EQ(Forward(*shared.model, x, t, {2, 2}, rows), Forward(*exact.model, x, t, {2, 2}));
}

TEST(DitFastAttentionTest, ASampleIsTheSameAloneOrBatchedAtOtherSteps) {
  Loaded loaded = Load(MakePlan(6, 16, MixedMethod));
  DitModel* model = loaded.model.get();
  auto schedule = NoiseSchedule::Create(model->config().noise_schedule);
  ASSERT_TRUE(schedule.ok());
  DenoisingStepper stepper(model);
  // A: guided under the plan; B: unguided under the plan; C: 5 steps (no
  // plan for it); D: the plan's step count but exact attention asked.
  struct Spec {
    int32_t label;
    double guidance;
    int32_t steps;
    uint64_t seed;
    bool exact;
    int joins_after;  // batched run: joins after this many steps of A
  };
  const std::vector<Spec> specs = {{3, 2.5, 6, 21, false, 0},
                                   {8, 1.0, 6, 22, false, 2},
                                   {0, 2.0, 5, 23, false, 3},
                                   {6, 2.0, 6, 24, true, 1}};
  std::vector<std::vector<float>> alone;
  for (const Spec& s : specs) {
    auto sample = Sample(*model, &*schedule, s.label, s.guidance, s.steps, s.seed, s.exact);
    while (!sample->done()) {
      DenoisingSample* one[] = {sample.get()};
      ASSERT_TRUE(stepper.Step(one).ok());
      EXPECT_EQ(sample->holds_attention_cache(), !s.exact && s.steps == 6 && !sample->done());
    }
    alone.push_back(std::vector<float>(sample->x().begin(), sample->x().end()));
  }
  EXPECT_EQ(model->attention_cache()->slots_in_use(), 0);

  std::vector<std::unique_ptr<DenoisingSample>> samples(specs.size());
  int a_steps = 0;
  bool peak_checked = false;
  for (;;) {
    for (size_t i = 0; i < specs.size(); ++i) {
      if (samples[i] == nullptr && a_steps >= specs[i].joins_after) {
        samples[i] = Sample(*model, &*schedule, specs[i].label, specs[i].guidance, specs[i].steps, specs[i].seed,
                            specs[i].exact);
      }
    }
    std::vector<DenoisingSample*> running;
    for (auto& s : samples) {
      if (s != nullptr && !s->done()) running.push_back(s.get());
    }
    if (running.empty()) break;
    ASSERT_TRUE(stepper.Step(running).ok());
    ++a_steps;
    if (a_steps == 3) {  // A (2 rows) and B (1 row) under the plan, D exact
      EXPECT_EQ(model->attention_cache()->slots_in_use(), 3);
      peak_checked = true;
    }
  }
  EXPECT_TRUE(peak_checked);
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(std::vector<float>(samples[i]->x().begin(), samples[i]->x().end()), alone[i]) << "sample " << i;
  }
  EXPECT_EQ(model->attention_cache()->slots_in_use(), 0);

  // Exact attention asked: the exact model's image.
  Loaded exact = Load(nullptr);
  auto pipeline_exact = DitPipeline::Create(exact.model.get());
  ASSERT_TRUE(pipeline_exact.ok());
  auto ref = Sample(*exact.model, &*schedule, 6, 2.0, 6, 24);
  while (!ref->done()) {
    DenoisingStepper exact_stepper(exact.model.get());
    DenoisingSample* one[] = {ref.get()};
    ASSERT_TRUE(exact_stepper.Step(one).ok());
  }
  EXPECT_EQ(std::vector<float>(ref->x().begin(), ref->x().end()), alone[3]);
  // The plan changes A's image (it is an approximation).
  auto a_exact = Sample(*exact.model, &*schedule, 3, 2.5, 6, 21);
  DenoisingStepper exact_stepper(exact.model.get());
  while (!a_exact->done()) {
    DenoisingSample* one[] = {a_exact.get()};
    ASSERT_TRUE(exact_stepper.Step(one).ok());
  }
  EXPECT_NE(std::vector<float>(a_exact->x().begin(), a_exact->x().end()), alone[0]);
}

TEST(DitFastAttentionTest, CacheRowsAreReturnedWhenASampleGoes) {
  Loaded loaded = Load(MakePlan(6, 16, MixedMethod), /*cache_rows=*/3);
  DitModel* model = loaded.model.get();
  EXPECT_EQ(model->attention_cache()->capacity(), 3);
  // Residual and output rows of the layers that use them, [256, 128] fp32 each.
  const DitAttentionPlan& plan = model->attention_cache()->plan();
  size_t per_row = 0;
  for (int32_t l = 0; l < 8; ++l) {
    per_row += (plan.LayerUsesResidual(l) + plan.LayerUsesOutput(l)) * 256 * 128 * sizeof(float);
  }
  EXPECT_EQ(model->attention_cache()->bytes_per_row(), per_row);
  auto schedule = NoiseSchedule::Create(model->config().noise_schedule);
  ASSERT_TRUE(schedule.ok());
  DenoisingStepper stepper(model);
  auto a = Sample(*model, &*schedule, 1, 2.0, 6, 1);
  auto b = Sample(*model, &*schedule, 2, 2.0, 6, 2);
  DenoisingSample* one[] = {a.get()};
  ASSERT_TRUE(stepper.Step(one).ok());
  ASSERT_TRUE(stepper.Step(one).ok());
  EXPECT_TRUE(a->holds_attention_cache());
  EXPECT_EQ(model->attention_cache()->slots_in_use(), 2);
  // B's two rows do not fit beside A's: the step fails and changes nothing.
  DenoisingSample* both[] = {a.get(), b.get()};
  const absl::Status full = stepper.Step(both);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_EQ(b->step(), 0);
  // A cancelled (destroyed mid-run) gives its rows back; B then runs.
  a.reset();
  EXPECT_EQ(model->attention_cache()->slots_in_use(), 0);
  DenoisingSample* just_b[] = {b.get()};
  while (!b->done()) ASSERT_TRUE(stepper.Step(just_b).ok());
  // Finished: returned at once, though the sample is still there.
  EXPECT_FALSE(b->holds_attention_cache());
  EXPECT_EQ(model->attention_cache()->slots_in_use(), 0);
}

TEST(DitFastAttentionTest, ForwardRefusesRowsThatDoNotFit) {
  Loaded loaded = Load(MakePlan(2, 16, [](int32_t, int32_t) { return M::kFull; }), 2);
  std::vector<float> x(32 * 32, 0.0f), eps(32 * 32);
  const std::vector<float> t = {10.0f};
  const std::vector<int32_t> y = {1};
  const std::vector<DitRowAttention> past_plan = {{2, 0, -1}}, bad_slot = {{0, 5, -1}};
  EXPECT_EQ(loaded.model->Forward({x, t, y, past_plan}, absl::MakeSpan(eps)).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(loaded.model->Forward({x, t, y, bad_slot}, absl::MakeSpan(eps)).code(),
            absl::StatusCode::kInvalidArgument);
  Loaded no_plan = Load(nullptr);
  const std::vector<DitRowAttention> planned = {{0, 0, -1}};
  EXPECT_EQ(no_plan.model->Forward({x, t, y, planned}, absl::MakeSpan(eps)).message(),
            "dit forward: sample 0 has attention plan step 0 and cache slot 0, but the model has no plan");
}

}  // namespace
}  // namespace tern::runtime
