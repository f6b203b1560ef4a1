// A synchronous driver over a DitModel: "N images of class y with sampler S,
// K steps, guidance g, seed s". Every step runs all unfinished samples in
// one forward pass (DenoisingStepper); the diffusion engine will do the same
// step by step, admitting and retiring samples between steps. Tests and
// command-line tools use this directly.
//
// Seeds: image i of a request starts from GaussianNoise(seed + i), so a
// request of N images gives the same images as N one-image requests with
// seeds seed, seed + 1, ..., alone or batched with anything else.
//
// Not thread-safe: one thread drives a pipeline (and its model).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/dit/denoising.h"
#include "runtime/dit/dit_model.h"
#include "runtime/dit/noise_schedule.h"
#include "runtime/dit/vae_decoder.h"

namespace tern::runtime {

struct DitGenerateRequest {
  int32_t class_label = 0;  // [0, num_classes), or the null class (unconditional)
  int32_t num_images = 1;   // >= 1
  DiffusionSamplerKind sampler = DiffusionSamplerKind::kDpmSolverPp2m;
  int32_t num_steps = 20;
  double guidance_scale = 1.0;
  uint64_t seed = 0;  // image i: seed + i (mod 2^64)
  std::shared_ptr<const SamplerSchedule> schedule;  // kSchedule's (see DenoisingParams)
};

struct DitImage {
  uint64_t seed = 0;
  // The image's: config.output_channels() x output_size()^2 (the model's
  // own C x H x W for pixel-space models, the VAE's for latent ones; a
  // latent model without a VAE: its latents' shape, and no pixels).
  int32_t channels = 0;
  int32_t height = 0;
  int32_t width = 0;
  std::vector<float> sample;     // [in_channels, image_size, image_size]: the sampler's final x
  std::vector<uint8_t> pixels;   // [channels, height, width]; empty for a latent model without a VAE
};

// uint8 = clip(floor((x - lo) * (255 / (hi - lo)) + 0.5), 0, 255) over the
// config's pixel range, in float64 ([-1, 1]: (x + 1) * 127.5, the demo
// model's golden convention). Empty for a latent model.
std::vector<uint8_t> SampleToPixels(absl::Span<const float> x, const DitConfig& config);

// The same over [lo, hi] (a VAE's output: [-1, 1], as diffusers' (x / 2 +
// 0.5).clamp(0, 1) * 255, rounded half up).
std::vector<uint8_t> ToPixels(absl::Span<const float> x, double lo, double hi);

// The images of finished samples, in order: a pixel-space model's straight
// from the samples; a latent model's decoded by `vae` in batches of at most
// `max_decode_batch` samples (each image is the same whatever the batch);
// a latent model without a VAE (vae null) gets no pixels.
absl::StatusOr<std::vector<DitImage>> MakeDitImages(const DitConfig& config, VaeDecoder* vae,
                                                    absl::Span<const DenoisingSample* const> samples,
                                                    int32_t max_decode_batch);

class DitPipeline {
 public:
  // `model` (and `vae`, which latent models need for pixels) are borrowed
  // and must outlive the pipeline.
  static absl::StatusOr<std::unique_ptr<DitPipeline>> Create(DitModel* model, VaeDecoder* vae = nullptr);

  const NoiseSchedule& schedule() const { return schedule_; }

  // The request's images, in order. INVALID_ARGUMENT naming the field for a
  // bad request; a forward error otherwise.
  absl::StatusOr<std::vector<DitImage>> Generate(const DitGenerateRequest& request);
  // Several requests in one batch (their step counts, samplers and guidance
  // may differ; a sample leaves the batch when its run ends). Result i holds
  // request i's images.
  absl::StatusOr<std::vector<std::vector<DitImage>>> GenerateBatch(absl::Span<const DitGenerateRequest> requests);

 private:
  DitPipeline(DitModel* model, VaeDecoder* vae, NoiseSchedule schedule)
      : model_(model), vae_(vae), schedule_(std::move(schedule)), stepper_(model) {}

  DitModel* model_;
  VaeDecoder* vae_;
  NoiseSchedule schedule_;
  DenoisingStepper stepper_;
};

}  // namespace tern::runtime
