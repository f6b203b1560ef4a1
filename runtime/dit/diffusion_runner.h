// DiffusionRunner: what the diffusion engine (scheduler/diffusion_engine.h)
// sees of a diffusion model, as the LLM engine sees a ModelRunner: the
// model's config and noise schedule, one denoising step over any set of
// samples, and the images of finished samples (a latent model's decoded by
// its VAE, batched). DitRunner is the DiT (and VAE decoder) on a DitOps.
//
// Threads: Step is called from one thread at a time (the engine thread);
// config() and schedule() are immutable after Create and readable anywhere.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/dit/denoising.h"
#include "runtime/dit/dit_config.h"
#include "runtime/dit/dit_model.h"
#include "runtime/dit/dit_ops.h"
#include "runtime/dit/dit_pipeline.h"
#include "runtime/dit/vae_decoder.h"
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
  // The images of finished samples, in order (MakeDitImages): pixel-space
  // models' from their samples; latent models' through the VAE decoder, one
  // decode pass per at most max_decode_batch samples. Each image is the same
  // whatever else is decoded with it. Errors are the decode pass's.
  virtual absl::StatusOr<std::vector<DitImage>> MakeImages(absl::Span<const DenoisingSample* const> samples) {
    return MakeDitImages(config(), nullptr, samples, 1);
  }
  // OK while the device can run more steps; after a failed Step, an error
  // means it cannot (the engine then stops for good).
  virtual absl::Status Health() const { return absl::OkStatus(); }
};

struct DitRunnerOptions {
  // Images a VAE decode pass takes at most (its activations at 512 x 512:
  // ~0.6 GB an image in bf16 on the GPU, over the four pooled buffers).
  int32_t max_decode_batch = 8;
  // The DiT's linear layers (dit_linear_plan.h); the VAE stays dense.
  DitModelOptions model;
};

class DitRunner final : public DiffusionRunner {
 public:
  // Loads <model_dir> (either layout, dit_config.h; the VAE from vae/ when
  // there is one) onto `ops`, which the runner owns. Errors name the file,
  // field or tensor.
  static absl::StatusOr<std::unique_ptr<DitRunner>> Create(const std::string& model_dir, std::unique_ptr<DitOps> ops,
                                                           const DitRunnerOptions& options = {});

  const DitConfig& config() const override { return model_->config(); }
  const NoiseSchedule& schedule() const override { return schedule_; }
  absl::Status Step(absl::Span<DenoisingSample* const> samples) override { return stepper_.Step(samples); }
  absl::StatusOr<std::vector<DitImage>> MakeImages(absl::Span<const DenoisingSample* const> samples) override {
    return MakeDitImages(config(), vae_.get(), samples, options_.max_decode_batch);
  }
  // Runs exact-attention forward passes of every row count 1..max_rows and
  // VAE decodes of every batch 1..max_decode_batch (a latent model's), each
  // twice, after one pass of each at its largest size: on ops that record
  // graphs (DitOps::records_graphs) every workspace has then grown to what
  // the engine's batches need and every pass shape has its graph before the
  // first request (a buffer that grows later retires the graphs). Inputs are
  // zeros at the middle timestep with the null class (class 0 without one);
  // nothing a request sees depends on them. The ops' error, if any.
  absl::Status Warmup(int32_t max_rows);
  // The first part of Warmup alone: one forward of max_rows rows and one
  // decode of the largest batch, so every workspace has grown to what any
  // batch up to max_rows needs (DitOps::workspace_bytes then says how much)
  // and no later pass allocates. For ops that record no graphs.
  absl::Status ReserveWorkspaces(int32_t max_rows);
  // The passes Warmup ran: DiT forwards and VAE decodes.
  struct WarmupCounts {
    int32_t forwards = 0;
    int32_t decodes = 0;
  };
  WarmupCounts warmup_counts() const { return warmup_counts_; }
  DitModel* model() { return model_.get(); }
  // The DiT's and the VAE decoder's weight bytes in the ops' memory.
  size_t weight_bytes() const { return model_->weight_bytes() + (vae_ != nullptr ? vae_->weight_bytes() : 0); }
  VaeDecoder* vae() { return vae_.get(); }  // null for pixel-space models and latents without a VAE
  DitOps* ops() { return ops_.get(); }

 private:
  // Warmup (every_shape) or ReserveWorkspaces.
  absl::Status Run(int32_t max_rows, bool every_shape);
  DitRunner(std::unique_ptr<DitOps> ops, std::unique_ptr<DitModel> model, std::unique_ptr<VaeDecoder> vae,
            NoiseSchedule schedule, const DitRunnerOptions& options)
      : ops_(std::move(ops)),
        model_(std::move(model)),
        vae_(std::move(vae)),
        schedule_(std::move(schedule)),
        stepper_(model_.get()),
        options_(options) {}

  std::unique_ptr<DitOps> ops_;
  std::unique_ptr<DitModel> model_;
  std::unique_ptr<VaeDecoder> vae_;
  NoiseSchedule schedule_;
  DenoisingStepper stepper_;
  DitRunnerOptions options_;
  WarmupCounts warmup_counts_;
};

}  // namespace tern::runtime
