// Step-level denoising: one sample's state (its latents, sampler and
// conditioning) and the step that advances any set of samples with one
// forward pass. This is the unit the diffusion engine schedules: samples of
// different requests, at different steps, with different samplers, step
// counts and guidance scales, share a batch; each one's result is the same
// as when it runs alone.
//
// A step's batch holds, per sample, a conditional row (x, t, class) and,
// when the sample is guided (guidance_scale != 1), an unconditional row
// (x, t, null class) right after it; the two are combined as
// eps_u + g (eps_c - eps_u) before the sampler update.
//
// Threads: samples and steppers are driven by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/dit/dit_fast_attention.h"
#include "runtime/dit/dit_model.h"
#include "runtime/dit/noise_schedule.h"
#include "runtime/dit/sampler_schedule.h"
#include "runtime/dit/samplers.h"

namespace tern::runtime {

// What one image is generated with.
struct DenoisingParams {
  int32_t class_label = 0;  // [0, num_classes), or the null class (unconditional)
  DiffusionSamplerKind sampler = DiffusionSamplerKind::kDpmSolverPp2m;
  int32_t num_steps = 20;       // network evaluations, [1, num_train_timesteps]
  double guidance_scale = 1.0;  // 1: the conditional prediction alone (one row a step)
  uint64_t seed = 0;            // the initial noise: GaussianNoise(seed, C*H*W)
  // kSchedule's timesteps and orders (shared, immutable): set exactly when
  // sampler is kSchedule, with num_steps its step count.
  std::shared_ptr<const SamplerSchedule> schedule;
  // Full attention at every step even when the model has an attention plan
  // (DiTFastAttn) for this step count.
  bool exact_attention = false;
};

// INVALID_ARGUMENT naming the field (class_label, steps, guidance_scale,
// sampler, schedule).
absl::Status ValidateDenoisingParams(const DitConfig& config, const DenoisingParams& params);

class DenoisingSample {
 public:
  // Starts from GaussianNoise(params.seed) at the first timestep. `schedule`
  // is borrowed and must outlive the sample. x0 is clipped to the pixel
  // range for pixel-space models and not clipped for latent ones.
  static absl::StatusOr<std::unique_ptr<DenoisingSample>> Create(const DitConfig& config,
                                                                 const NoiseSchedule* schedule,
                                                                 const DenoisingParams& params);

  const DenoisingParams& params() const { return params_; }
  int32_t step() const { return sampler_->step(); }
  int32_t num_steps() const { return sampler_->num_steps(); }
  bool done() const { return sampler_->done(); }
  // The model timestep of the next step (CHECK: not done).
  int32_t timestep() const { return sampler_->Timestep(sampler_->step()); }
  // Rows this sample adds to a forward pass: 2 when guided, else 1.
  int32_t model_rows() const { return params_.guidance_scale != 1.0 ? 2 : 1; }
  // [C*H*W]: the current noisy sample; the clean sample once done.
  absl::Span<const float> x() const { return x_; }
  // True while the sample holds DiTFastAttn cache rows (from its first step
  // under a plan until it finishes or is destroyed).
  bool holds_attention_cache() const { return attention_slots_ != nullptr; }

  // One step from the model's outputs for this sample's rows: `cond_eps`,
  // and `uncond_eps` when model_rows() is 2 (else empty).
  void Advance(absl::Span<const float> cond_eps, absl::Span<const float> uncond_eps);

 private:
  DenoisingSample(const DenoisingParams& params, int32_t null_class, std::unique_ptr<DiffusionSampler> sampler,
                  std::vector<float> x)
      : params_(params), null_class_(null_class), sampler_(std::move(sampler)), x_(std::move(x)) {}
  friend class DenoisingStepper;

  DenoisingParams params_;
  int32_t null_class_;
  std::unique_ptr<DiffusionSampler> sampler_;
  std::vector<float> x_;
  std::vector<float> guided_eps_;  // scratch
  std::unique_ptr<DitAttentionSlots> attention_slots_;  // one per model row, under an attention plan
};

// Runs denoising steps of a model over host-side batches.
class DenoisingStepper {
 public:
  // `model` is borrowed and must outlive the stepper.
  explicit DenoisingStepper(DitModel* model) : model_(model) {}

  // Advances every sample by one step with one forward pass over all their
  // rows (in order: each sample's conditional row, then its unconditional
  // one). Every sample must be unfinished and made for this model's config.
  // Errors are the forward pass's; samples are unchanged on error.
  absl::Status Step(absl::Span<DenoisingSample* const> samples);

 private:
  DitModel* model_;
  // Host staging of one pass, reused.
  std::vector<float> x_, timesteps_, eps_;
  std::vector<int32_t> labels_;
  std::vector<DitRowAttention> attention_;
};

}  // namespace tern::runtime
