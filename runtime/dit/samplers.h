// Deterministic diffusion samplers for epsilon-predicting models, each a
// per-sample state machine, so that one engine step can advance samples that
// are at different steps of different runs:
//
//   sampler->Init(num_steps, n);                 // n values per sample
//   while (!sampler->done()) {
//     t = sampler->Timestep(sampler->step());
//     eps = guided model output at (x, t);      // batched with other samples
//     sampler->Step(eps, x);                     // x <- x at the next point
//   }                                            // x is the clean sample
//
// All three visit the same timesteps (SamplingTimesteps: t_0 = T-1 > ... >
// t_{S-1}), then a final point with alpha = 1, sigma = 0. At step i, from
// eps: x0_i = (x - sigma_i eps) / alpha_i, clipped to [clip_min, clip_max]
// when clip_x0.
//   DDIM (eta 0):      D = x0_i; x <- (sigma_{i+1}/sigma_i) x
//                      + (alpha_{i+1} - alpha_i sigma_{i+1}/sigma_i) D, and on the
//                      last step x <- D.
//   DPM-Solver++(2M):  as DDIM, but for 0 < i < S-1 D = (1 + 1/(2r)) x0_i
//                      - 1/(2r) x0_{i-1}, r = h_{i-1} / h_i,
//                      h_i = lambda_{i+1} - lambda_i.
//   Euler:             explicit Euler on the probability-flow ODE in the
//                      variables xbar = x / alpha, sigmabar = sigma / alpha
//                      (k-diffusion's and diffusers' Euler for VP models):
//                      d = (xbar - x0_i) / sigmabar_i, xbar <- xbar +
//                      (sigmabar_{i+1} - sigmabar_i) d. In exact arithmetic it
//                      is the same update as DDIM (DDIM is this ODE's Euler
//                      step); it differs in rounding only.
//   Schedule:          a SamplerSchedule's timesteps instead of
//                      SamplingTimesteps, and per step its order: 1 is the
//                      DDIM update, 2 the DPM-Solver++(2M) one (r from the
//                      schedule's own lambdas). A schedule equal to
//                      UniformSamplerSchedule(T, S, second_order) gives
//                      dpmpp2m's (or ddim's) results bit for bit.
// DDIM and DPM-Solver++(2M) are exactly tools/train/dit/diffusion.py's
// `sample`, whose outputs golden.json holds. Coefficients and updates are
// float64; x stays float32 between steps (it is the model's input).
//
// Threads: a sampler belongs to one sample and one thread at a time. The
// schedule is borrowed and must outlive it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/dit/noise_schedule.h"
#include "runtime/dit/sampler_schedule.h"

namespace tern::runtime {

// kSchedule follows a SamplerSchedule (the model's configured schedule file).
enum class DiffusionSamplerKind { kDdim, kDpmSolverPp2m, kEuler, kSchedule };

// "ddim", "dpmpp2m" (also "dpm++2m", "dpmpp_2m"), "euler", "schedule";
// INVALID_ARGUMENT naming "sampler" otherwise.
absl::StatusOr<DiffusionSamplerKind> ParseDiffusionSamplerKind(std::string_view name);
// "ddim", "dpmpp2m", "euler", "schedule".
const char* DiffusionSamplerName(DiffusionSamplerKind kind);

struct DiffusionSamplerOptions {
  // Clip the predicted clean sample to [clip_min, clip_max] (pixel models,
  // as the reference does); latent models leave it off.
  bool clip_x0 = true;
  double clip_min = -1.0;
  double clip_max = 1.0;
};

class DiffusionSampler {
 public:
  virtual ~DiffusionSampler() = default;
  DiffusionSampler(const DiffusionSampler&) = delete;
  DiffusionSampler& operator=(const DiffusionSampler&) = delete;

  DiffusionSamplerKind kind() const { return kind_; }
  // (Re)starts a run of `num_steps` network evaluations on samples of
  // `num_elements` values. INVALID_ARGUMENT naming "steps" unless
  // 1 <= num_steps <= the schedule's T (a kSchedule sampler: unless
  // num_steps is its schedule's step count).
  absl::Status Init(int32_t num_steps, int64_t num_elements);
  int32_t num_steps() const { return static_cast<int32_t>(timesteps_.size()); }
  // Steps taken since Init.
  int32_t step() const { return step_; }
  bool done() const { return step_ >= num_steps(); }
  // The model timestep of step `step`, in [0, num_steps).
  int32_t Timestep(int32_t step) const;
  const std::vector<int32_t>& timesteps() const { return timesteps_; }

  // One step: `eps` is the (guided) noise prediction for `x` at
  // Timestep(step()); x becomes the sample at the next timestep (the clean
  // sample after the last step), and step() advances. Both spans hold
  // num_elements values. Calling it when done() is a bug (CHECK).
  void Step(absl::Span<const float> eps, absl::Span<float> x);

 protected:
  DiffusionSampler(DiffusionSamplerKind kind, const NoiseSchedule* schedule, const DiffusionSamplerOptions& options)
      : kind_(kind), schedule_(schedule), options_(options) {}
  // Step i of num_steps(); alpha_[i], sigma_[i], lambda_[i] for i <= num_steps()
  // (index num_steps() is the final point: alpha 1, sigma 0, lambda +inf).
  virtual void Update(int32_t i, absl::Span<const float> eps, absl::Span<float> x) = 0;
  // Called by Init after the tables are set.
  virtual void Reset(int64_t num_elements) {}
  // The timesteps of a run of num_steps steps: SamplingTimesteps by default.
  virtual absl::StatusOr<std::vector<int32_t>> PlanTimesteps(int32_t num_train_timesteps, int32_t num_steps) const;
  bool last(int32_t i) const { return i == num_steps() - 1; }
  // x0 = (x - sigma_i eps) / alpha_i, clipped when the options say so.
  double PredictX0(int32_t i, float x, float eps) const;

  std::vector<double> alpha_, sigma_, lambda_;

 private:
  DiffusionSamplerKind kind_;
  const NoiseSchedule* schedule_;
  DiffusionSamplerOptions options_;
  std::vector<int32_t> timesteps_;
  int64_t num_elements_ = 0;
  int32_t step_ = 0;
};

// A sampler of `kind` over `schedule` (borrowed); Init it before use.
// kSchedule follows `steps` (shared; non-null for kSchedule, ignored for the
// other kinds: a null one with kSchedule is a bug, CHECK). `steps` must fit
// `schedule` (its num_train_timesteps equal: CHECK).
std::unique_ptr<DiffusionSampler> CreateDiffusionSampler(DiffusionSamplerKind kind, const NoiseSchedule* schedule,
                                                         const DiffusionSamplerOptions& options,
                                                         std::shared_ptr<const SamplerSchedule> steps = nullptr);

// Classifier-free guidance: out = uncond + scale * (cond - uncond), per value
// (scale 1 is the conditional prediction, 0 the unconditional one).
void CombineGuidance(absl::Span<const float> cond, absl::Span<const float> uncond, double scale,
                     absl::Span<float> out);

}  // namespace tern::runtime
