// Seeded noise, the noise schedule and the samplers, without a network:
// the noise against golden.json; the samplers against closed forms (the
// checks of tools/train/dit/check_samplers.py): a point-mass data
// distribution, whose exact eps every sampler must follow back to the
// point, and a Gaussian one, whose probability-flow ODE endpoint is known,
// so each sampler's order of convergence shows.
#include <cmath>
#include <memory>
#include <vector>

#include "gtest/gtest.h"
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

TEST(DitNoiseTest, MatchesTheGoldenNoiseCheck) {
  const auto& check = dit_test::Golden()["noise_check"];
  ASSERT_EQ(check["seed"].get<int>(), 1);
  const std::vector<float> noise = GaussianNoise(1, 1024);
  const auto first8 = check["first8"].get<std::vector<double>>();
  for (size_t i = 0; i < first8.size(); ++i) {
    EXPECT_EQ(noise[i], static_cast<float>(first8[i])) << "value " << i;  // bit-exact
  }
  double sum = 0.0;
  for (float v : noise) sum += v;
  // The golden sum is of the same float32 values, summed in float64 by numpy
  // (pairwise); a different summation order moves it by ~1e-13.
  EXPECT_NEAR(sum, check["sum"].get<double>(), 1e-9);
}

TEST(DitNoiseTest, SplitMix64MatchesItsPublishedOutputs) {
  SplitMix64 rng(0);
  EXPECT_EQ(rng.Next(), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(rng.Next(), 0x6E789E6AA1B965F4ull);
  EXPECT_EQ(rng.Next(), 0x06C45D188009454Full);
}

TEST(DitNoiseTest, IsStandardNormalAndSeeded) {
  const std::vector<float> big = GaussianNoise(7, 200000);
  double mean = 0.0, var = 0.0;
  for (float v : big) mean += v;
  mean /= double(big.size());
  for (float v : big) var += (v - mean) * (v - mean);
  var /= double(big.size());
  EXPECT_LT(std::abs(mean), 0.01);
  EXPECT_LT(std::abs(var - 1.0), 0.01);
  EXPECT_EQ(GaussianNoise(5, 21), GaussianNoise(5, 21));
  EXPECT_NE(GaussianNoise(5, 8), GaussianNoise(6, 8));
  // An odd count is a prefix of the even one.
  const std::vector<float> odd = GaussianNoise(5, 7), even = GaussianNoise(5, 8);
  EXPECT_EQ(odd, std::vector<float>(even.begin(), even.begin() + 7));
}

TEST(DitScheduleTest, TimestepsAndSchedule) {
  EXPECT_EQ(*SamplingTimesteps(1000, 4), (std::vector<int32_t>{999, 666, 333, 0}));
  EXPECT_EQ(*SamplingTimesteps(1000, 2), (std::vector<int32_t>{999, 0}));
  EXPECT_EQ(*SamplingTimesteps(1000, 1), (std::vector<int32_t>{999}));
  EXPECT_EQ(SamplingTimesteps(1000, 1000)->back(), 0);
  EXPECT_EQ((*SamplingTimesteps(1000, 1000))[1], 998);
  EXPECT_EQ(SamplingTimesteps(1000, 0).status().message(), "steps: 0 is not in [1, 1000]");
  EXPECT_FALSE(SamplingTimesteps(1000, 1001).ok());
  // golden.json states each case's timesteps.
  for (const auto& c : dit_test::Golden()["samples"]) {
    EXPECT_EQ(*SamplingTimesteps(1000, c["steps"].get<int32_t>()), c["timesteps"].get<std::vector<int32_t>>());
  }

  const NoiseSchedule s = DemoSchedule();
  EXPECT_EQ(s.num_train_timesteps(), 1000);
  EXPECT_DOUBLE_EQ(s.alpha_bar(0), 1.0 - 1e-4);
  EXPECT_DOUBLE_EQ(s.alpha_bar(1), (1.0 - 1e-4) * (1.0 - (1e-4 + (0.02 - 1e-4) / 999.0)));
  EXPECT_NEAR(s.alpha_bar(999), 4.035e-5, 1e-8);  // the DDPM schedule's last abar
  EXPECT_NEAR(s.alpha(500) * s.alpha(500) + s.sigma(500) * s.sigma(500), 1.0, 1e-15);
  EXPECT_NEAR(s.lambda(500), std::log(s.alpha(500) / s.sigma(500)), 1e-15);

  DitNoiseScheduleConfig cosine;
  cosine.beta_schedule = "cosine";
  EXPECT_FALSE(NoiseSchedule::Create(cosine).ok());
}

// eps of a data distribution: class 0 a point mass at x_star, otherwise
// N(0, s^2) per value.
struct Oracle {
  const NoiseSchedule* schedule;
  std::vector<float> x_star;
  double s = 0.5;
  bool point_mass = true;

  std::vector<float> Eps(const std::vector<float>& x, int32_t t) const {
    const double ab = schedule->alpha_bar(t), a = std::sqrt(ab), sg = std::sqrt(1.0 - ab);
    std::vector<float> eps(x.size());
    for (size_t k = 0; k < x.size(); ++k) {
      eps[k] = static_cast<float>(point_mass ? (x[k] - a * x_star[k]) / sg : sg * x[k] / (ab * s * s + (1.0 - ab)));
    }
    return eps;
  }
};

std::vector<float> RunSampler(DiffusionSamplerKind kind, const Oracle& oracle, std::vector<float> x, int32_t steps,
                       bool clip) {
  DiffusionSamplerOptions options;
  options.clip_x0 = clip;
  auto sampler = CreateDiffusionSampler(kind, oracle.schedule, options);
  EXPECT_TRUE(sampler->Init(steps, int64_t(x.size())).ok());
  while (!sampler->done()) {
    const std::vector<float> eps = oracle.Eps(x, sampler->Timestep(sampler->step()));
    sampler->Step(eps, absl::MakeSpan(x));
  }
  return x;
}

constexpr DiffusionSamplerKind kAllSamplers[] = {DiffusionSamplerKind::kDdim, DiffusionSamplerKind::kDpmSolverPp2m,
                                                 DiffusionSamplerKind::kEuler};

TEST(DitSamplerTest, EverySamplerRecoversAPointMass) {
  const NoiseSchedule schedule = DemoSchedule();
  Oracle oracle{&schedule, {}};
  const std::vector<float> u = GaussianNoise(3, 256);
  for (float v : u) oracle.x_star.push_back(static_cast<float>(0.8 * std::tanh(v)));
  const std::vector<float> noise = GaussianNoise(4, 256);
  for (DiffusionSamplerKind kind : kAllSamplers) {
    for (int32_t steps : {1, 2, 10, 50}) {
      const std::vector<float> out = RunSampler(kind, oracle, noise, steps, /*clip=*/true);
      double err = 0.0;
      for (size_t k = 0; k < out.size(); ++k) err = std::max(err, std::abs(double(out[k]) - oracle.x_star[k]));
      // x and eps are float32: one step from t = 999 divides eps's rounding
      // (~1e-7) by alpha_999 = 0.0064; more steps end at t = 0, alpha ~ 1.
      EXPECT_LT(err, steps == 1 ? 1e-4 : 2e-6) << DiffusionSamplerName(kind) << " " << steps << " steps";
    }
  }
}

TEST(DitSamplerTest, ConvergenceOrdersOnAGaussian) {
  const NoiseSchedule schedule = DemoSchedule();
  Oracle oracle{&schedule, {}, 0.5, /*point_mass=*/false};
  const std::vector<float> noise = GaussianNoise(9, 256);
  const double a_t = schedule.alpha(999), s_t = schedule.sigma(999), s = oracle.s;
  const double gain = s / std::sqrt(a_t * a_t * s * s + s_t * s_t);
  double max_exact = 0.0;
  for (float v : noise) max_exact = std::max(max_exact, std::abs(v * gain));
  const auto error = [&](DiffusionSamplerKind kind, int32_t steps) {
    const std::vector<float> out = RunSampler(kind, oracle, noise, steps, /*clip=*/false);
    double err = 0.0;
    for (size_t k = 0; k < out.size(); ++k) err = std::max(err, std::abs(out[k] - noise[k] * gain));
    return err / max_exact;
  };
  const double ddim50 = error(DiffusionSamplerKind::kDdim, 50), ddim100 = error(DiffusionSamplerKind::kDdim, 100);
  const double dpm50 = error(DiffusionSamplerKind::kDpmSolverPp2m, 50);
  const double dpm100 = error(DiffusionSamplerKind::kDpmSolverPp2m, 100);
  const double euler50 = error(DiffusionSamplerKind::kEuler, 50), euler100 = error(DiffusionSamplerKind::kEuler, 100);
  EXPECT_LT(dpm50, ddim50);
  EXPECT_GT(ddim50 / ddim100, 1.7) << "first order: the error halves";
  EXPECT_LT(ddim50 / ddim100, 2.3);
  EXPECT_GT(dpm50 / dpm100, 3.4) << "second order: the error quarters";
  EXPECT_LT(dpm50 / dpm100, 4.6);
  EXPECT_GT(euler50 / euler100, 1.7);
  EXPECT_LT(euler50 / euler100, 2.3);
  EXPECT_NEAR(euler50, ddim50, 1e-5) << "Euler and DDIM are one update";
}

TEST(DitSamplerTest, EulerIsDdimUpToRounding) {
  const NoiseSchedule schedule = DemoSchedule();
  Oracle oracle{&schedule, {}, 0.7, /*point_mass=*/false};
  const std::vector<float> noise = GaussianNoise(12, 512);
  for (bool clip : {false, true}) {
    const std::vector<float> ddim = RunSampler(DiffusionSamplerKind::kDdim, oracle, noise, 20, clip);
    const std::vector<float> euler = RunSampler(DiffusionSamplerKind::kEuler, oracle, noise, 20, clip);
    for (size_t k = 0; k < ddim.size(); ++k) ASSERT_NEAR(ddim[k], euler[k], 1e-5) << k;
  }
}

TEST(DitSamplerTest, StateMachine) {
  const NoiseSchedule schedule = DemoSchedule();
  auto sampler = CreateDiffusionSampler(DiffusionSamplerKind::kDpmSolverPp2m, &schedule, {});
  EXPECT_TRUE(sampler->done());  // nothing to do before Init
  EXPECT_EQ(sampler->Init(0, 4).message(), "steps: 0 is not in [1, 1000]");
  EXPECT_FALSE(sampler->Init(3, 0).ok());
  ASSERT_TRUE(sampler->Init(3, 4).ok());
  EXPECT_EQ(sampler->num_steps(), 3);
  EXPECT_EQ(sampler->Timestep(0), 999);
  EXPECT_EQ(sampler->Timestep(1), 499);
  EXPECT_EQ(sampler->Timestep(2), 0);
  std::vector<float> x(4, 0.5f), eps(4, 0.1f);
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(sampler->done());
    EXPECT_EQ(sampler->step(), i);
    sampler->Step(eps, absl::MakeSpan(x));
  }
  EXPECT_TRUE(sampler->done());
  ASSERT_TRUE(sampler->Init(2, 4).ok());  // a restart
  EXPECT_EQ(sampler->step(), 0);
  EXPECT_EQ(sampler->timesteps(), (std::vector<int32_t>{999, 0}));

  EXPECT_EQ(*ParseDiffusionSamplerKind("dpm++2m"), DiffusionSamplerKind::kDpmSolverPp2m);
  EXPECT_EQ(*ParseDiffusionSamplerKind("euler"), DiffusionSamplerKind::kEuler);
  EXPECT_EQ(ParseDiffusionSamplerKind("plms").status().message(),
            "sampler: \"plms\" is not ddim, dpmpp2m, euler or schedule");
}

TEST(DitSamplerTest, Guidance) {
  const std::vector<float> cond = {2.0f, -1.0f}, uncond = {1.0f, 1.0f};
  std::vector<float> out(2);
  CombineGuidance(cond, uncond, 1.0, absl::MakeSpan(out));
  EXPECT_EQ(out, cond);
  CombineGuidance(cond, uncond, 0.0, absl::MakeSpan(out));
  EXPECT_EQ(out, uncond);
  CombineGuidance(cond, uncond, 3.0, absl::MakeSpan(out));
  EXPECT_EQ(out, (std::vector<float>{4.0f, -5.0f}));
}

}  // namespace
}  // namespace tern::runtime
