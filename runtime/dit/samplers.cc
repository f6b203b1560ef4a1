#include "runtime/dit/samplers.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "runtime/base/check.h"
#include "runtime/base/status_macros.h"

namespace tern::runtime {
namespace {

// DDIM with eta 0: jumps to the next point along the deterministic path
// through the predicted clean sample.
class DdimSampler final : public DiffusionSampler {
 public:
  DdimSampler(const NoiseSchedule* schedule, const DiffusionSamplerOptions& options)
      : DiffusionSampler(DiffusionSamplerKind::kDdim, schedule, options) {}

 private:
  void Update(int32_t i, absl::Span<const float> eps, absl::Span<float> x) override {
    const double ratio = sigma_[i + 1] / sigma_[i];
    const double coef = alpha_[i + 1] - alpha_[i] * ratio;
    for (size_t k = 0; k < x.size(); ++k) {
      const double x0 = PredictX0(i, x[k], eps[k]);
      x[k] = static_cast<float>(last(i) ? x0 : ratio * x[k] + coef * x0);
    }
  }
};

// The multistep data-prediction update both DPM-Solver++(2M) and sampler
// schedules take: the DDIM update with D = x0_i (first order) or D extrapolated
// from this step's and the previous step's x0 (second order).
class MultistepSampler : public DiffusionSampler {
 protected:
  using DiffusionSampler::DiffusionSampler;

  void Reset(int64_t num_elements) override { previous_x0_.assign(size_t(num_elements), 0.0); }

  void MultistepUpdate(int32_t i, bool second_order, absl::Span<const float> eps, absl::Span<float> x) {
    const double ratio = sigma_[i + 1] / sigma_[i];
    const double coef = alpha_[i + 1] - alpha_[i] * ratio;
    double c0 = 1.0, c1 = 0.0;  // D = c0 x0_i - c1 x0_{i-1}
    if (second_order) {
      const double r = (lambda_[i] - lambda_[i - 1]) / (lambda_[i + 1] - lambda_[i]);
      c0 = 1.0 + 0.5 / r;
      c1 = 0.5 / r;
    }
    for (size_t k = 0; k < x.size(); ++k) {
      const double x0 = PredictX0(i, x[k], eps[k]);
      const double d = second_order ? c0 * x0 - c1 * previous_x0_[k] : x0;
      x[k] = static_cast<float>(last(i) ? d : ratio * x[k] + coef * d);
      previous_x0_[k] = x0;
    }
  }

 private:
  std::vector<double> previous_x0_;  // [num_elements] x0 of the previous step
};

// DPM-Solver++(2M) (Lu et al. 2022, multistep, data prediction): the DDIM
// update with D extrapolated from this step's and the previous step's x0;
// first order on the first and the last step.
class DpmSolverPp2mSampler final : public MultistepSampler {
 public:
  DpmSolverPp2mSampler(const NoiseSchedule* schedule, const DiffusionSamplerOptions& options)
      : MultistepSampler(DiffusionSamplerKind::kDpmSolverPp2m, schedule, options) {}

 private:
  void Update(int32_t i, absl::Span<const float> eps, absl::Span<float> x) override {
    MultistepUpdate(i, /*second_order=*/i > 0 && !last(i), eps, x);
  }
};

// A SamplerSchedule's timesteps and per-step orders: order 1 is DDIM's update
// and order 2 DPM-Solver++(2M)'s, written as DpmSolverPp2mSampler writes them
// (same expressions, same rounding), so the uniform schedules reproduce ddim
// and dpmpp2m bit for bit.
class ScheduleSampler final : public MultistepSampler {
 public:
  ScheduleSampler(const NoiseSchedule* schedule, const DiffusionSamplerOptions& options,
                  std::shared_ptr<const SamplerSchedule> steps)
      : MultistepSampler(DiffusionSamplerKind::kSchedule, schedule, options), steps_(std::move(steps)) {}

 private:
  absl::StatusOr<std::vector<int32_t>> PlanTimesteps(int32_t num_train_timesteps, int32_t num_steps) const override {
    if (num_steps != steps_->num_steps()) {
      return absl::InvalidArgumentError(absl::StrCat("steps: ", num_steps, ", but the sampler schedule ",
                                                     steps_->source, " has ", steps_->num_steps()));
    }
    return steps_->timesteps();
  }

  void Update(int32_t i, absl::Span<const float> eps, absl::Span<float> x) override {
    // The parser keeps order 2 off the first and the last step.
    MultistepUpdate(i, steps_->steps[size_t(i)].order == 2, eps, x);
  }

  std::shared_ptr<const SamplerSchedule> steps_;
};

// Euler on the probability-flow ODE dxbar/dsigmabar = (xbar - x0) / sigmabar.
class EulerSampler final : public DiffusionSampler {
 public:
  EulerSampler(const NoiseSchedule* schedule, const DiffusionSamplerOptions& options)
      : DiffusionSampler(DiffusionSamplerKind::kEuler, schedule, options) {}

 private:
  void Update(int32_t i, absl::Span<const float> eps, absl::Span<float> x) override {
    const double sbar = sigma_[i] / alpha_[i];
    const double sbar_next = sigma_[i + 1] / alpha_[i + 1];
    for (size_t k = 0; k < x.size(); ++k) {
      const double x0 = PredictX0(i, x[k], eps[k]);
      const double xbar = double(x[k]) / alpha_[i];
      const double derivative = (xbar - x0) / sbar;
      x[k] = static_cast<float>(alpha_[i + 1] * (xbar + (sbar_next - sbar) * derivative));
    }
  }
};

}  // namespace

absl::StatusOr<DiffusionSamplerKind> ParseDiffusionSamplerKind(std::string_view name) {
  if (name == "ddim") return DiffusionSamplerKind::kDdim;
  if (name == "dpmpp2m" || name == "dpm++2m" || name == "dpmpp_2m") return DiffusionSamplerKind::kDpmSolverPp2m;
  if (name == "euler") return DiffusionSamplerKind::kEuler;
  if (name == "schedule") return DiffusionSamplerKind::kSchedule;
  return absl::InvalidArgumentError(
      absl::StrCat("sampler: \"", std::string(name), "\" is not ddim, dpmpp2m, euler or schedule"));
}

const char* DiffusionSamplerName(DiffusionSamplerKind kind) {
  switch (kind) {
    case DiffusionSamplerKind::kDdim:
      return "ddim";
    case DiffusionSamplerKind::kDpmSolverPp2m:
      return "dpmpp2m";
    case DiffusionSamplerKind::kEuler:
      return "euler";
    case DiffusionSamplerKind::kSchedule:
      return "schedule";
  }
  return "?";
}

absl::Status DiffusionSampler::Init(int32_t num_steps, int64_t num_elements) {
  if (num_elements <= 0) return absl::InvalidArgumentError(absl::StrCat("sample of ", num_elements, " values"));
  ASSIGN_OR_RETURN(timesteps_, PlanTimesteps(schedule_->num_train_timesteps(), num_steps));
  alpha_.clear();
  sigma_.clear();
  lambda_.clear();
  for (int32_t t : timesteps_) {
    alpha_.push_back(schedule_->alpha(t));
    sigma_.push_back(schedule_->sigma(t));
    lambda_.push_back(schedule_->lambda(t));
  }
  alpha_.push_back(1.0);
  sigma_.push_back(0.0);
  lambda_.push_back(std::numeric_limits<double>::infinity());
  num_elements_ = num_elements;
  step_ = 0;
  Reset(num_elements);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> DiffusionSampler::PlanTimesteps(int32_t num_train_timesteps,
                                                                    int32_t num_steps) const {
  return SamplingTimesteps(num_train_timesteps, num_steps);
}

int32_t DiffusionSampler::Timestep(int32_t step) const {
  CHECK(step >= 0 && step < num_steps()) << "step " << step << " of " << num_steps();
  return timesteps_[step];
}

void DiffusionSampler::Step(absl::Span<const float> eps, absl::Span<float> x) {
  CHECK(!done()) << "sampler stepped past its last step";
  CHECK_EQ(int64_t(eps.size()), num_elements_);
  CHECK_EQ(int64_t(x.size()), num_elements_);
  Update(step_, eps, x);
  ++step_;
}

double DiffusionSampler::PredictX0(int32_t i, float x, float eps) const {
  const double x0 = (double(x) - sigma_[i] * double(eps)) / alpha_[i];
  return options_.clip_x0 ? std::clamp(x0, options_.clip_min, options_.clip_max) : x0;
}

std::unique_ptr<DiffusionSampler> CreateDiffusionSampler(DiffusionSamplerKind kind, const NoiseSchedule* schedule,
                                                         const DiffusionSamplerOptions& options,
                                                         std::shared_ptr<const SamplerSchedule> steps) {
  switch (kind) {
    case DiffusionSamplerKind::kDdim:
      return std::make_unique<DdimSampler>(schedule, options);
    case DiffusionSamplerKind::kDpmSolverPp2m:
      return std::make_unique<DpmSolverPp2mSampler>(schedule, options);
    case DiffusionSamplerKind::kEuler:
      return std::make_unique<EulerSampler>(schedule, options);
    case DiffusionSamplerKind::kSchedule:
      CHECK(steps != nullptr) << "a schedule sampler without a schedule";
      CHECK_EQ(steps->num_train_timesteps, schedule->num_train_timesteps());
      return std::make_unique<ScheduleSampler>(schedule, options, std::move(steps));
  }
  return nullptr;
}

void CombineGuidance(absl::Span<const float> cond, absl::Span<const float> uncond, double scale,
                     absl::Span<float> out) {
  CHECK_EQ(cond.size(), out.size());
  CHECK_EQ(uncond.size(), out.size());
  for (size_t k = 0; k < out.size(); ++k) {
    out[k] = static_cast<float>(double(uncond[k]) + scale * (double(cond[k]) - double(uncond[k])));
  }
}

}  // namespace tern::runtime
