// A diffusion transformer's config.json, parsed into the fields the DiT
// runtime uses: the network's shape (DiT, Peebles & Xie 2023), the noise
// schedule, and whether the model works on pixels or on VAE latents.
//
// Two directory layouts:
// - one config.json (+ model.safetensors) in tern's spelling
//   (models/tern-demo-dit/config.json: image_size, null_class,
//   noise_schedule, input.pixel_range) or the argument names of the original
//   DiT constructor (input_size, class_dropout_prob), so that a
//   DiT-XL/2-shaped config (learn_sigma, in_channels 4, input_size 32 or 64,
//   patch 2, hidden 1152, depth 28, heads 16) parses too. A latent model
//   keeps its VAE in vae/ (diffusers' AutoencoderKL: config.json and
//   diffusion_pytorch_model.safetensors), as the original DiT code loads
//   stabilityai/sd-vae-ft-ema;
// - diffusers' pipeline layout (DiTPipeline): model_index.json (id2label),
//   transformer/ (DiTTransformer2DModel or Transformer2DModel with
//   ada_norm_zero: config.json, diffusion_pytorch_model.safetensors),
//   scheduler/scheduler_config.json (the training noise schedule) and vae/.
// Every malformed, missing or inconsistent field is an INVALID_ARGUMENT
// whose message names the file and the field.
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

// The decoder half of a KL autoencoder (diffusers' AutoencoderKL, the
// Stable Diffusion VAE DiT was trained with): latents [latent_channels, h, w]
// -> images [out_channels, h * upscale(), w * upscale()] in [-1, 1].
//   z = post_quant_conv(latents / scaling_factor)            1x1 conv
//   x = conv_in(z)                                           3x3 conv -> block_out_channels.back()
//   x = mid: ResNet, attention (one head over all pixels), ResNet
//   per up block i (block_out_channels reversed): layers_per_block + 1 ResNets,
//     then (all but the last) nearest 2x upsampling + 3x3 conv
//   image = conv_out(SiLU(GroupNorm(x)))                     3x3 conv -> out_channels
// ResNet: x + conv2(SiLU(GN(conv1(SiLU(GN(x)))))), the skip through a 1x1
// conv when the channel count changes. GroupNorm: norm_num_groups groups,
// eps 1e-6, affine.
struct VaeDecoderConfig {
  int32_t latent_channels = 4;
  int32_t out_channels = 3;
  std::vector<int32_t> block_out_channels;  // SD: [128, 256, 512, 512]
  int32_t layers_per_block = 2;
  int32_t norm_num_groups = 32;
  double norm_eps = 1e-6;  // diffusers' Decoder: fixed
  double scaling_factor = 0.18215;
  bool mid_block_attention = true;
  bool post_quant_conv = true;

  // Pixels per latent cell along each side: 2^(blocks - 1).
  int32_t upscale() const { return 1 << (block_out_channels.size() - 1); }
  int32_t top_channels() const { return block_out_channels.back(); }
};

// Where a model directory keeps its parts.
enum class DitLayout {
  kSingle,     // config.json + model.safetensors (tern's or the original DiT's names); vae/ beside
  kDiffusers,  // model_index.json, transformer/, scheduler/, vae/
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
  // q, k and v have biases (always in tern's and the original naming, where
  // they are one qkv linear; diffusers' attention_bias).
  bool attention_bias = true;
  int32_t frequency_embedding_size = 256;  // timestep sinusoid features
  // Timestep features use f_i = exp(-ln(10000) i / (half - shift)): 0 in the
  // original DiT, 1 in diffusers (Timesteps(downscale_freq_shift=1)).
  int32_t timestep_freq_shift = 0;
  // LayerNorm eps before attention and in the final layer.
  double layernorm_eps = 1e-6;
  // LayerNorm eps before the MLP: layernorm_eps, except in diffusers, whose
  // BasicTransformerBlock.norm3 takes the config's norm_eps (1e-5 by default)
  // while norm1 and norm_out keep 1e-6.
  double mlp_layernorm_eps = 1e-6;
  DitNoiseScheduleConfig noise_schedule;
  // Pixel-space models declare input.pixel_range [lo, hi]; images are
  // uint8 = clip(floor((x - lo) * 255 / (hi - lo) + 0.5), 0, 255). Latent
  // models (no pixel range) make images through their VAE decoder (`vae`,
  // has_vae), whose output is in [-1, 1]; one without a vae/ makes latents only.
  // input.classes: the name of each class label, [num_classes] (empty when
  // the config names none).
  std::vector<std::string> class_names;
  bool pixel_space = false;
  double pixel_min = -1.0;
  double pixel_max = 1.0;
  bool has_vae = false;
  VaeDecoderConfig vae;  // when has_vae
  DitLayout layout = DitLayout::kSingle;

  int32_t grid_size() const { return image_size / patch_size; }   // tokens per side
  int32_t num_tokens() const { return grid_size() * grid_size(); }
  int32_t head_dim() const { return hidden_size / num_heads; }
  int32_t mlp_hidden() const { return static_cast<int32_t>(hidden_size * mlp_ratio); }
  int32_t out_channels() const { return learn_sigma ? 2 * in_channels : in_channels; }
  int32_t patch_features() const { return in_channels * patch_size * patch_size; }  // one unfolded patch
  int64_t sample_elements() const { return int64_t(in_channels) * image_size * image_size; }  // [C, H, W]
  bool has_null_class() const { return null_class >= 0; }
  // The images the model makes: pixels per side and channels (the model's
  // own input for pixel-space models, the VAE's output for latent ones; 0
  // for a latent model without a VAE).
  int32_t output_size() const {
    return pixel_space ? image_size : has_vae ? image_size * vae.upscale() : 0;
  }
  int32_t output_channels() const { return pixel_space ? in_channels : has_vae ? vae.out_channels : 0; }
  // Directories (relative to the model directory) of the DiT's and the
  // VAE's safetensors.
  std::string transformer_dir() const { return layout == DitLayout::kDiffusers ? "transformer" : ""; }
  static constexpr const char* kVaeDir = "vae";
};

// Parses config.json text (the single-file layout, without a VAE);
// INVALID_ARGUMENT naming the field on any error.
absl::StatusOr<DitConfig> ParseDitConfig(const std::string& json_text);

// Parses an AutoencoderKL config.json (vae/config.json); errors name
// `file` and the field.
absl::StatusOr<VaeDecoderConfig> ParseVaeConfig(const std::string& json_text, const std::string& file = "vae/config.json");

// The diffusers layout from its files' texts: model_index.json,
// transformer/config.json, scheduler/scheduler_config.json and
// vae/config.json (empty: no VAE). Errors name the file and the field.
absl::StatusOr<DitConfig> ParseDiffusersDitConfig(const std::string& model_index, const std::string& transformer,
                                                  const std::string& scheduler, const std::string& vae);

// True when <model_dir> holds a diffusers pipeline (model_index.json).
bool IsDiffusersModelDirectory(const std::string& model_dir);

// Reads a model directory of either layout (diffusers when model_index.json
// is there, else config.json and an optional vae/); NOT_FOUND naming a
// missing file.
absl::StatusOr<DitConfig> LoadDitConfig(const std::string& model_dir);

}  // namespace tern::runtime
