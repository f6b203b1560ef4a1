// Sampler schedules: the file format's checks (every bad schedule names the
// file, the step and the field), the schedule sampler against the fixed
// samplers (the uniform schedules reproduce ddim and dpmpp2m bit for bit, on
// a closed-form eps and on the demo DiT through the pipeline), and its
// second order on an arbitrary, non-uniform schedule.
#include "runtime/dit/sampler_schedule.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/dit/cpu_dit_ops.h"
#include "runtime/dit/denoising.h"
#include "runtime/dit/dit_pipeline.h"
#include "runtime/dit/gaussian_noise.h"
#include "runtime/dit/noise_schedule.h"
#include "runtime/dit/samplers.h"
#include "tests/runtime/dit/dit_golden.h"

namespace tern::runtime {
namespace {

NoiseSchedule DemoSchedule() {
  auto schedule = NoiseSchedule::Create(DitNoiseScheduleConfig{});
  EXPECT_TRUE(schedule.ok());
  return *schedule;
}

std::string ScheduleJson(const std::string& steps, const std::string& extra = "") {
  return absl::StrCat(R"({"format": "tern-sampler-schedule", "version": 1, "num_train_timesteps": 1000, )", extra,
                      R"("steps": )", steps, "}");
}

std::string ErrorOf(const std::string& text, int32_t model_t = 1000) {
  auto parsed = ParseSamplerSchedule(text, "s.json", model_t);
  EXPECT_FALSE(parsed.ok()) << text;
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(parsed.status().message());
}

TEST(SamplerScheduleTest, ParsesAndWritesTheFormat) {
  auto s = ParseSamplerSchedule(
      ScheduleJson(R"([{"timestep": 999, "order": 1}, {"timestep": 600, "order": 2}, {"timestep": 17, "order": 1}])",
                   R"("metadata": {"found_by": "a test", "steps": 3}, )"),
      "s.json", 1000);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->num_train_timesteps, 1000);
  EXPECT_EQ(s->timesteps(), (std::vector<int32_t>{999, 600, 17}));
  EXPECT_EQ(s->orders(), (std::vector<int32_t>{1, 2, 1}));
  EXPECT_EQ(s->source, "s.json");
  EXPECT_EQ(s->metadata_json, R"({"found_by":"a test","steps":3})");
  // The writer's output parses back to the same schedule.
  auto again = ParseSamplerSchedule(SamplerScheduleToJson(*s), "again.json", 1000);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->timesteps(), s->timesteps());
  EXPECT_EQ(again->orders(), s->orders());
  EXPECT_EQ(again->metadata_json, s->metadata_json);
  // One step, and no metadata.
  auto one = ParseSamplerSchedule(ScheduleJson(R"([{"order": 1, "timestep": 999}])"), "one.json");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->metadata_json, "{}");
}

TEST(SamplerScheduleTest, BadSchedulesNameFileStepAndField) {
  EXPECT_EQ(ErrorOf(ScheduleJson(R"([{"timestep": 999, "order": 1}, {"timestep": 999, "order": 1}])")),
            "s.json: steps[1].timestep: 999 does not decrease from steps[0]'s 999 (timesteps are strictly "
            "decreasing)");
  EXPECT_EQ(ErrorOf(ScheduleJson(R"([{"timestep": 500, "order": 1}, {"timestep": 700, "order": 1}])")),
            "s.json: steps[1].timestep: 700 does not decrease from steps[0]'s 500 (timesteps are strictly "
            "decreasing)");
  EXPECT_EQ(ErrorOf(ScheduleJson(R"([{"timestep": 1000, "order": 1}])")),
            "s.json: steps[0].timestep: 1000 is not in [0, 999]");
  EXPECT_EQ(ErrorOf(ScheduleJson(R"([{"timestep": 999, "order": 1}, {"timestep": -1, "order": 1}])")),
            "s.json: steps[1].timestep: -1 is not in [0, 999]");
  EXPECT_EQ(ErrorOf(ScheduleJson(R"([{"timestep": 999, "order": 2}, {"timestep": 0, "order": 1}])")),
            "s.json: steps[0].order: 2 on the first step, which has no previous step to extrapolate from");
  EXPECT_EQ(ErrorOf(ScheduleJson(R"([{"timestep": 999, "order": 1}, {"timestep": 0, "order": 2}])")),
            "s.json: steps[1].order: 2 on the last step, which ends at the clean sample (sigma 0, an infinite "
            "log-SNR step): it is order 1");
  EXPECT_EQ(ErrorOf(ScheduleJson(R"([{"timestep": 999, "order": 3}])")), "s.json: steps[0].order: 3 is not 1 or 2");
  EXPECT_EQ(ErrorOf(ScheduleJson(R"([{"timestep": 999}])")), "s.json: steps[0].order: missing (1 or 2)");
  EXPECT_EQ(ErrorOf(ScheduleJson(R"([{"timestep": 999.5, "order": 1}])")),
            "s.json: steps[0].timestep: 999.5 is not an integer");
  EXPECT_EQ(ErrorOf(ScheduleJson(R"([{"timestep": 999, "order": 1, "solver": "unipc"}])")),
            "s.json: steps[0].solver: unknown field (a step has timestep and order)");
  EXPECT_EQ(ErrorOf(ScheduleJson(R"([{"timestep": 999, "order": 1}])", R"("guidance": 2, )")),
            "s.json: guidance: unknown field (a schedule has format, version, num_train_timesteps, steps and "
            "metadata)");
  EXPECT_EQ(ErrorOf(ScheduleJson("[]")), "s.json: steps: empty; a schedule has at least one step");
  EXPECT_EQ(ErrorOf(ScheduleJson("{}")), "s.json: steps: missing or not a list");
  EXPECT_EQ(ErrorOf(ScheduleJson(R"([999, 500])")),
            "s.json: steps[0]: is not an object {\"timestep\": ..., \"order\": ...}");
  EXPECT_EQ(ErrorOf(ScheduleJson(R"([{"timestep": 999, "order": 1}])"), 500),
            "s.json: num_train_timesteps: 1000, but the model was trained with 500 timesteps");
  EXPECT_EQ(ErrorOf(ScheduleJson(R"([{"timestep": 999, "order": 1}])", R"("metadata": [1], )")),
            "s.json: metadata: is not a JSON object");
  EXPECT_EQ(ErrorOf(R"({"version": 1, "num_train_timesteps": 1000, "steps": []})"),
            "s.json: format: missing; expected \"tern-sampler-schedule\"");
  EXPECT_EQ(ErrorOf(R"({"format": "tern-sampler-schedule", "version": 2, "num_train_timesteps": 1000})"),
            "s.json: version: 2 is not a version this build reads (1)");
  EXPECT_EQ(ErrorOf("{\"steps\": ["), "s.json: not valid JSON");
  EXPECT_EQ(ErrorOf("[]"), "s.json: not a JSON object");

  auto missing = LoadSamplerSchedule("/nonexistent/schedule.json", 1000);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), "/nonexistent/schedule.json: cannot read the sampler schedule");
}

TEST(SamplerScheduleTest, LoadsFromAFile) {
  const std::string path =
      (std::filesystem::path(::testing::TempDir()) / "sampler_schedule_test_schedule.json").string();
  {
    std::ofstream out(path);
    out << ScheduleJson(R"([{"timestep": 999, "order": 1}, {"timestep": 0, "order": 1}])");
  }
  auto s = LoadSamplerSchedule(path, 1000);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->source, path);
  EXPECT_EQ(s->timesteps(), (std::vector<int32_t>{999, 0}));
  std::filesystem::remove(path);
}

TEST(SamplerScheduleTest, UniformSchedulesAreTheFixedSamplers) {
  auto dpm = UniformSamplerSchedule(1000, 5, /*second_order=*/true);
  ASSERT_TRUE(dpm.ok());
  EXPECT_EQ(dpm->timesteps(), *SamplingTimesteps(1000, 5));
  EXPECT_EQ(dpm->orders(), (std::vector<int32_t>{1, 2, 2, 2, 1}));
  EXPECT_EQ(UniformSamplerSchedule(1000, 2, true)->orders(), (std::vector<int32_t>{1, 1}));
  EXPECT_EQ(UniformSamplerSchedule(1000, 1, true)->orders(), (std::vector<int32_t>{1}));
  EXPECT_EQ(UniformSamplerSchedule(1000, 4, false)->orders(), (std::vector<int32_t>{1, 1, 1, 1}));
  EXPECT_EQ(UniformSamplerSchedule(1000, 0, true).status().message(), "steps: 0 is not in [1, 1000]");
  // Every uniform schedule is a valid file.
  for (int32_t steps : {1, 2, 3, 20, 1000}) {
    for (bool second : {false, true}) {
      auto parsed = ParseSamplerSchedule(SamplerScheduleToJson(*UniformSamplerSchedule(1000, steps, second)), "u",
                                         1000);
      EXPECT_TRUE(parsed.ok()) << steps << " " << second << ": " << parsed.status();
    }
  }
}

// A smooth, nonlinear eps (not a sampler's fixed point), so that every
// coefficient and the previous x0 matter.
std::vector<float> SyntheticEps(const NoiseSchedule& schedule, const std::vector<float>& x, int32_t t) {
  std::vector<float> eps(x.size());
  const double s = schedule.sigma(t);
  for (size_t k = 0; k < x.size(); ++k) {
    eps[k] = static_cast<float>(s * std::tanh(1.3 * x[k]) + 0.1 * std::sin(0.01 * t + double(k)));
  }
  return eps;
}

std::vector<float> RunOnSyntheticEps(DiffusionSampler& sampler, const NoiseSchedule& schedule, std::vector<float> x, int32_t steps) {
  EXPECT_TRUE(sampler.Init(steps, int64_t(x.size())).ok());
  while (!sampler.done()) {
    const std::vector<float> eps = SyntheticEps(schedule, x, sampler.Timestep(sampler.step()));
    sampler.Step(eps, absl::MakeSpan(x));
  }
  return x;
}

TEST(ScheduleSamplerTest, UniformSchedulesReproduceDdimAndDpmpp2mBitForBit) {
  const NoiseSchedule schedule = DemoSchedule();
  const std::vector<float> noise = GaussianNoise(21, 300);
  for (bool clip : {true, false}) {
    DiffusionSamplerOptions options;
    options.clip_x0 = clip;
    for (int32_t steps : {1, 2, 3, 5, 8, 20, 50}) {
      for (bool second : {false, true}) {
        const DiffusionSamplerKind fixed_kind =
            second ? DiffusionSamplerKind::kDpmSolverPp2m : DiffusionSamplerKind::kDdim;
        auto fixed = CreateDiffusionSampler(fixed_kind, &schedule, options);
        auto steps_schedule = std::make_shared<const SamplerSchedule>(*UniformSamplerSchedule(1000, steps, second));
        auto scheduled = CreateDiffusionSampler(DiffusionSamplerKind::kSchedule, &schedule, options, steps_schedule);
        EXPECT_EQ(scheduled->kind(), DiffusionSamplerKind::kSchedule);
        const std::vector<float> want = RunOnSyntheticEps(*fixed, schedule, noise, steps);
        const std::vector<float> got = RunOnSyntheticEps(*scheduled, schedule, noise, steps);
        EXPECT_EQ(scheduled->timesteps(), fixed->timesteps());
        for (size_t k = 0; k < want.size(); ++k) {
          ASSERT_EQ(got[k], want[k]) << DiffusionSamplerName(fixed_kind) << " " << steps << " steps, clip " << clip
                                     << ", value " << k;
        }
      }
    }
  }
}

TEST(ScheduleSamplerTest, FollowsItsScheduleAndRefusesOtherStepCounts) {
  const NoiseSchedule schedule = DemoSchedule();
  auto s = std::make_shared<SamplerSchedule>(*ParseSamplerSchedule(
      ScheduleJson(R"([{"timestep": 900, "order": 1}, {"timestep": 400, "order": 2}, {"timestep": 35, "order": 1}])"),
      "three.json", 1000));
  auto sampler = CreateDiffusionSampler(DiffusionSamplerKind::kSchedule, &schedule, {}, s);
  EXPECT_EQ(sampler->Init(4, 8).message(), "steps: 4, but the sampler schedule three.json has 3");
  ASSERT_TRUE(sampler->Init(3, 8).ok());
  EXPECT_EQ(sampler->timesteps(), (std::vector<int32_t>{900, 400, 35}));
  EXPECT_EQ(*ParseDiffusionSamplerKind("schedule"), DiffusionSamplerKind::kSchedule);
  EXPECT_STREQ(DiffusionSamplerName(DiffusionSamplerKind::kSchedule), "schedule");
}

// The Gaussian data of dit_samplers_test's convergence check: eps of
// N(0, s^2) per value is sigma x / (abar s^2 + 1 - abar), and the
// probability-flow ODE maps x_T to x_T s / sqrt(abar_T s^2 + sigma_T^2).
double GaussianError(const NoiseSchedule& schedule, const std::shared_ptr<const SamplerSchedule>& steps) {
  const double s = 0.5;
  const std::vector<float> noise = GaussianNoise(9, 256);
  const int32_t t0 = steps->steps[0].timestep;
  const double gain = s / std::sqrt(schedule.alpha_bar(t0) * s * s + 1.0 - schedule.alpha_bar(t0));
  DiffusionSamplerOptions options;
  options.clip_x0 = false;
  auto sampler = CreateDiffusionSampler(DiffusionSamplerKind::kSchedule, &schedule, options, steps);
  std::vector<float> x = noise;
  EXPECT_TRUE(sampler->Init(steps->num_steps(), int64_t(x.size())).ok());
  while (!sampler->done()) {
    const int32_t t = sampler->Timestep(sampler->step());
    const double ab = schedule.alpha_bar(t), sg = std::sqrt(1.0 - ab);
    std::vector<float> eps(x.size());
    for (size_t k = 0; k < x.size(); ++k) eps[k] = static_cast<float>(sg * x[k] / (ab * s * s + (1.0 - ab)));
    sampler->Step(eps, absl::MakeSpan(x));
  }
  double err = 0.0, top = 0.0;
  for (size_t k = 0; k < x.size(); ++k) {
    err = std::max(err, std::abs(x[k] - noise[k] * gain));
    top = std::max(top, std::abs(noise[k] * gain));
  }
  return err / top;
}

// Timesteps 999 u^1.5 (denser near t = 0), u uniform, with the given orders;
// checked by the parser (distinct and decreasing at 50 and 100 steps).
std::shared_ptr<const SamplerSchedule> PowerSchedule(int32_t n, bool second_order) {
  SamplerSchedule s;
  s.num_train_timesteps = 1000;
  for (int32_t i = 0; i < n; ++i) {
    const double u = double(n - 1 - i) / double(n - 1);
    s.steps.push_back({static_cast<int32_t>(std::lround(999.0 * std::pow(u, 1.5))),
                       second_order && i > 0 && i < n - 1 ? 2 : 1});
  }
  auto parsed = ParseSamplerSchedule(SamplerScheduleToJson(s), "power", 1000);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return std::make_shared<const SamplerSchedule>(*parsed);
}

TEST(ScheduleSamplerTest, SecondOrderOnANonUniformSchedule) {
  const NoiseSchedule schedule = DemoSchedule();
  const double first50 = GaussianError(schedule, PowerSchedule(50, false));
  const double first100 = GaussianError(schedule, PowerSchedule(100, false));
  const double second50 = GaussianError(schedule, PowerSchedule(50, true));
  const double second100 = GaussianError(schedule, PowerSchedule(100, true));
  std::printf("999 u^1.5 spacing: order 1 %.3g -> %.3g, order 2 %.3g -> %.3g\n", first50, first100, second50,
              second100);
  EXPECT_LT(second50, first50);
  EXPECT_GT(first50 / first100, 1.7) << "first order: the error halves";
  EXPECT_LT(first50 / first100, 2.3);
  // Measured 5.26 (the observed order log2 = 2.4: at 50 steps the error is not
  // yet in its asymptotic regime); first order would be ~2, third ~8.
  EXPECT_GT(second50 / second100, 3.2) << "second order: the error (about) quarters";
  EXPECT_LT(second50 / second100, 6.5);
}

TEST(ScheduleSamplerTest, DemoDitThroughThePipelineEqualsDpmpp2m) {
  CpuDitOps ops;
  auto model = DitModel::Load(dit_test::kDemoDitDir, &ops);
  ASSERT_TRUE(model.ok()) << model.status();
  auto pipeline = DitPipeline::Create(model->get());
  ASSERT_TRUE(pipeline.ok()) << pipeline.status();
  DitGenerateRequest fixed;
  fixed.class_label = 7;
  fixed.num_images = 2;
  fixed.num_steps = 6;
  fixed.guidance_scale = 2.0;
  fixed.seed = 1234;
  fixed.sampler = DiffusionSamplerKind::kDpmSolverPp2m;
  DitGenerateRequest scheduled = fixed;
  scheduled.sampler = DiffusionSamplerKind::kSchedule;
  scheduled.schedule = std::make_shared<const SamplerSchedule>(*UniformSamplerSchedule(1000, 6, true));
  auto want = (*pipeline)->Generate(fixed);
  auto got = (*pipeline)->Generate(scheduled);
  ASSERT_TRUE(want.ok()) << want.status();
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ((*got)[i].sample, (*want)[i].sample) << "image " << i;
    EXPECT_EQ((*got)[i].pixels, (*want)[i].pixels) << "image " << i;
  }
  // A schedule sampler's request must carry its schedule, with its step count;
  // a fixed sampler's must not carry one.
  DitGenerateRequest bad = scheduled;
  bad.schedule = nullptr;
  EXPECT_EQ((*pipeline)->Generate(bad).status().message(),
            "sampler: schedule, but the model has no sampler schedule configured");
  bad = scheduled;
  bad.num_steps = 7;
  EXPECT_EQ((*pipeline)->Generate(bad).status().message(),
            "steps: 7, but the sampler schedule dpmpp2m at 6 steps has 6");
  bad = fixed;
  bad.schedule = scheduled.schedule;
  EXPECT_EQ((*pipeline)->Generate(bad).status().message(),
            "schedule: given with sampler dpmpp2m, which does not follow one");
}

}  // namespace
}  // namespace tern::runtime
