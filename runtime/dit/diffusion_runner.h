// DiffusionRunner: what the diffusion engine (scheduler/diffusion_engine.h)
// sees of a diffusion model, as the LLM engine sees a ModelRunner: the
// model's config and noise schedule, and one denoising step over any set of
// samples. DitRunner is the DiT on a DitOps (CpuDitOps today).
//
// Threads: Step is called from one thread at a time (the engine thread);
// config() and schedule() are immutable after Create and readable anywhere.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/dit/denoising.h"
#include "runtime/dit/dit_config.h"
#include "runtime/dit/dit_model.h"
#include "runtime/dit/dit_ops.h"
#include "runtime/dit/noise_schedule.h"

namespace tern::runtime {

class DiffusionRunner {
 public:
  virtual ~DiffusionRunner() = default;
  virtual const DitConfig& config() const = 0;
  // Samples the engine creates borrow it; it outlives them.
  virtual const NoiseSchedule& schedule() const = 0;
  // Advances every sample by one step with one forward pass (the contract of
  // DenoisingStepper::Step: each unfinished, made for config(); unchanged
  // on error).
  virtual absl::Status Step(absl::Span<DenoisingSample* const> samples) = 0;
  // OK while the device can run more steps; after a failed Step, an error
  // means it cannot (the engine then stops for good).
  virtual absl::Status Health() const { return absl::OkStatus(); }
};

class DitRunner final : public DiffusionRunner {
 public:
  // Loads <model_dir> (config.json, safetensors) onto `ops`, which the
  // runner owns. Errors name the file, field or tensor.
  static absl::StatusOr<std::unique_ptr<DitRunner>> Create(const std::string& model_dir, std::unique_ptr<DitOps> ops);

  const DitConfig& config() const override { return model_->config(); }
  const NoiseSchedule& schedule() const override { return schedule_; }
  absl::Status Step(absl::Span<DenoisingSample* const> samples) override { return stepper_.Step(samples); }

 private:
  DitRunner(std::unique_ptr<DitOps> ops, std::unique_ptr<DitModel> model, NoiseSchedule schedule)
      : ops_(std::move(ops)), model_(std::move(model)), schedule_(std::move(schedule)), stepper_(model_.get()) {}

  std::unique_ptr<DitOps> ops_;
  std::unique_ptr<DitModel> model_;
  NoiseSchedule schedule_;
  DenoisingStepper stepper_;
};

}  // namespace tern::runtime
