// A diffusion transformer's config.json, parsed into the fields the DiT
// runtime uses: the network's shape (DiT, Peebles & Xie 2023), the noise
// schedule, and whether the model works on pixels or on VAE latents.
//
// Two spellings are accepted: tern's own (models/tern-demo-dit/config.json:
// image_size, null_class, noise_schedule, input.pixel_range) and the
// argument names of the original DiT constructor (input_size,
// class_dropout_prob), so that a DiT-XL/2-shaped config (learn_sigma,
// in_channels 4, input_size 32 or 64, patch 2, hidden 1152, depth 28,
// heads 16) parses too. Every malformed, missing or inconsistent field is an
// INVALID_ARGUMENT whose message names the field.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tern::runtime {

// The forward process: betas = linspace(beta_start, beta_end, T) in float64,
// abar_t = prod_{s<=t} (1 - beta_s). Only "linear" (DDPM, DiT) is implemented.
struct DitNoiseScheduleConfig {
  std::string beta_schedule = "linear";
  double beta_start = 1e-4;
  double beta_end = 0.02;
  int32_t num_train_timesteps = 1000;
};

struct DitConfig {
  int32_t image_size = 0;   // model input height = width (pixels, or latent cells)
  int32_t in_channels = 0;  // channels of the model input
  int32_t patch_size = 0;
  int32_t hidden_size = 0;
  int32_t depth = 0;  // DiT blocks
  int32_t num_heads = 0;
  double mlp_ratio = 4.0;
  int32_t num_classes = 0;
  // Row of the class table that means "no class" (classifier-free guidance);
  // num_classes by default, -1 when the table has none (class_dropout_prob 0).
  int32_t null_class = -1;
  // The network also predicts the variance: in_channels more output channels,
  // which deterministic samplers ignore.
  bool learn_sigma = false;
  int32_t frequency_embedding_size = 256;  // timestep sinusoid features
  double layernorm_eps = 1e-6;
  DitNoiseScheduleConfig noise_schedule;
  // Pixel-space models declare input.pixel_range [lo, hi]; images are
  // uint8 = clip(floor((x - lo) * 255 / (hi - lo) + 0.5), 0, 255). Latent
  // models (no pixel range) need a VAE decoder, which tern does not have yet.
  // input.classes: the name of each class label, [num_classes] (empty when
  // the config names none).
  std::vector<std::string> class_names;
  bool pixel_space = false;
  double pixel_min = -1.0;
  double pixel_max = 1.0;

  int32_t grid_size() const { return image_size / patch_size; }   // tokens per side
  int32_t num_tokens() const { return grid_size() * grid_size(); }
  int32_t head_dim() const { return hidden_size / num_heads; }
  int32_t mlp_hidden() const { return static_cast<int32_t>(hidden_size * mlp_ratio); }
  int32_t out_channels() const { return learn_sigma ? 2 * in_channels : in_channels; }
  int32_t patch_features() const { return in_channels * patch_size * patch_size; }  // one unfolded patch
  int64_t sample_elements() const { return int64_t(in_channels) * image_size * image_size; }  // [C, H, W]
  bool has_null_class() const { return null_class >= 0; }
};

// Parses config.json text; INVALID_ARGUMENT naming the field on any error.
absl::StatusOr<DitConfig> ParseDitConfig(const std::string& json_text);

// Reads <model_dir>/config.json and parses it; NOT_FOUND when absent.
absl::StatusOr<DitConfig> LoadDitConfig(const std::string& model_dir);

}  // namespace tern::runtime
