// tern-mkmodel --arch dit: seeded random latent DiT models with a random VAE
// (AutoencoderKL), in diffusers' pipeline layout (model_index.json,
// transformer/, scheduler/, vae/) or the original DiT's (config.json and
// model.safetensors in facebookresearch/DiT's names, vae/ beside), at
// DiT-XL/2's shapes or a tiny one with the same structure for tests.
//
// Weights: linear and convolution weights ~ N(0, 1 / fan_in) (adaLN
// projections 0.5 / sqrt(fan_in): modulation of ~0.35), biases ~ N(0, 0.02^2),
// class tables ~ N(0, 1), GroupNorm scales 1 + N(0, 0.1^2), shifts
// N(0, 0.02^2). Each tensor's stream is seeded from (seed, its name in its
// layout); a diffusers block's embedders are copies of block 0's (as
// converted checkpoints are) unless distinct_block_embedders.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model/dtype.h"

namespace tern::tools {

struct DitModelSpec {
  int32_t sample_size = 32;  // latent side
  int32_t in_channels = 4;
  int32_t patch_size = 2;
  int32_t hidden_size = 1152;
  int32_t depth = 28;
  int32_t num_heads = 16;
  int32_t num_classes = 1000;
  bool learn_sigma = true;
  std::vector<int32_t> vae_block_out_channels = {128, 256, 512, 512};
  int32_t vae_layers_per_block = 2;
  int32_t vae_norm_num_groups = 32;
  bool diffusers = true;
  bool distinct_block_embedders = false;
};

// "tiny" (latent 8x8x4, 16 tokens, hidden 64, 2 heads, depth 2, 10 classes;
// VAE [32, 32, 64, 64]: 64x64 images), "dit-xl-2-256", "dit-xl-2-512".
absl::StatusOr<DitModelSpec> DitPreset(const std::string& preset);

// Writes the model into `out` (created); a one-line summary.
absl::StatusOr<std::string> WriteDitModel(const DitModelSpec& spec, const std::string& out, uint64_t seed,
                                          runtime::DType dtype);

}  // namespace tern::tools
