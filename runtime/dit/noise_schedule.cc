#include "runtime/dit/noise_schedule.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/base/check.h"

namespace tern::runtime {

absl::StatusOr<NoiseSchedule> NoiseSchedule::Create(const DitNoiseScheduleConfig& config) {
  if (config.beta_schedule != "linear") {
    return absl::InvalidArgumentError(
        absl::StrCat("noise schedule \"", config.beta_schedule, "\" is not supported (linear)"));
  }
  const int32_t n = config.num_train_timesteps;
  if (n < 2) return absl::InvalidArgumentError(absl::StrCat("num_train_timesteps ", n, " is not >= 2"));
  if (!(config.beta_start > 0.0 && config.beta_end >= config.beta_start && config.beta_end < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("betas [", config.beta_start, ", ", config.beta_end,
                                                   "] are not 0 < beta_start <= beta_end < 1"));
  }
  NoiseSchedule schedule;
  schedule.alpha_bar_.resize(n);
  // numpy.linspace: start + i * step, with the endpoint set exactly.
  const double step = (config.beta_end - config.beta_start) / double(n - 1);
  double product = 1.0;
  for (int32_t t = 0; t < n; ++t) {
    const double beta = t == n - 1 ? config.beta_end : double(t) * step + config.beta_start;
    product *= 1.0 - beta;
    schedule.alpha_bar_[t] = product;
  }
  return schedule;
}

double NoiseSchedule::alpha_bar(int32_t t) const {
  CHECK(t >= 0 && t < num_train_timesteps()) << "timestep " << t;
  return alpha_bar_[t];
}

double NoiseSchedule::alpha(int32_t t) const { return std::sqrt(alpha_bar(t)); }

double NoiseSchedule::sigma(int32_t t) const { return std::sqrt(1.0 - alpha_bar(t)); }

double NoiseSchedule::lambda(int32_t t) const { return std::log(alpha(t) / sigma(t)); }

absl::StatusOr<std::vector<int32_t>> SamplingTimesteps(int32_t num_train_timesteps, int32_t num_steps) {
  if (num_steps < 1 || num_steps > num_train_timesteps) {
    return absl::InvalidArgumentError(
        absl::StrCat("steps: ", num_steps, " is not in [1, ", num_train_timesteps, "]"));
  }
  if (num_steps == 1) return std::vector<int32_t>{num_train_timesteps - 1};
  std::vector<int32_t> timesteps(num_steps);
  for (int32_t i = 0; i < num_steps; ++i) {
    timesteps[i] = static_cast<int32_t>(int64_t(num_train_timesteps - 1) * (num_steps - 1 - i) / (num_steps - 1));
  }
  return timesteps;
}

}  // namespace tern::runtime
