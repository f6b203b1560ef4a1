// The diffusion forward process of a DiT and the timesteps a sampler visits.
//
// Float64 throughout, as the reference (tools/train/dit/diffusion.py):
// betas = numpy.linspace(beta_start, beta_end, T) (i * step + start, the last
// one exactly beta_end), abar_t = prod_{s<=t} (1 - beta_s), alpha_t =
// sqrt(abar_t), sigma_t = sqrt(1 - abar_t), lambda_t = ln(alpha_t / sigma_t);
// x_t = alpha_t x0 + sigma_t eps. Immutable after Create; safe to share.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/dit/dit_config.h"

namespace tern::runtime {

class NoiseSchedule {
 public:
  // INVALID_ARGUMENT for a schedule other than linear or betas outside (0, 1).
  static absl::StatusOr<NoiseSchedule> Create(const DitNoiseScheduleConfig& config);

  int32_t num_train_timesteps() const { return static_cast<int32_t>(alpha_bar_.size()); }
  // t in [0, num_train_timesteps).
  double alpha_bar(int32_t t) const;
  double alpha(int32_t t) const;
  double sigma(int32_t t) const;
  double lambda(int32_t t) const;

 private:
  NoiseSchedule() = default;
  std::vector<double> alpha_bar_;
};

// The model timesteps of a sampler run of `num_steps` network evaluations
// (1 <= num_steps <= T), descending: t_i = (T-1) (S-1-i) div (S-1), so
// T-1 ... 0; one step is {T-1}. INVALID_ARGUMENT naming "steps" otherwise.
absl::StatusOr<std::vector<int32_t>> SamplingTimesteps(int32_t num_train_timesteps, int32_t num_steps);

}  // namespace tern::runtime
