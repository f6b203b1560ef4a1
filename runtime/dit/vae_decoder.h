// The VAE decoder of a latent diffusion model (diffusers' AutoencoderKL
// decoder, the Stable Diffusion VAE that DiT-XL/2 generates latents for),
// written once against DitOps like the DiT itself. VaeDecoderConfig
// (dit_config.h) has the network; per ResNet block and for the mid-block
// attention:
//
//   resnet(x)    = skip(x) + conv2(SiLU(GN(conv1(SiLU(GN(x))))))      skip: identity or a 1x1 conv
//   attention(x) = x + to_out(Attention(qkv(GN(x))))                   one head of C over all pixels
//
// Activations are NHWC [B * H * W, C] (DitOps' image layout); the decoder
// takes the sampler's planar latents [B, C, h, w], divides them by
// scaling_factor (in float32, as diffusers' DiTPipeline multiplies by
// 1 / scaling_factor) and returns planar images [B, out_channels, H, W],
// H = h * upscale, in the decoder's [-1, 1] range (unclamped).
//
// Batch invariance: every op computes a sample's rows alone (DitOps), so an
// image is bitwise the same decoded alone or batched.
//
// Tensor names are diffusers' (vae/diffusion_pytorch_model.safetensors):
// post_quant_conv, decoder.conv_in, decoder.mid_block.resnets.{0,1},
// decoder.mid_block.attentions.0 (group_norm, to_q, to_k, to_v, to_out.0;
// the deprecated query, key, value, proj_attn are read too, as [C, C] or
// 1x1-conv [C, C, 1, 1] weights), decoder.up_blocks.{i}.resnets.{j}
// (norm1, conv1, norm2, conv2, conv_shortcut), decoder.up_blocks.{i}.
// upsamplers.0.conv, decoder.conv_norm_out, decoder.conv_out. The encoder's
// tensors are ignored.
//
// Not thread-safe: one thread drives a decoder (and its DitOps).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/dit/dit_config.h"
#include "runtime/dit/dit_ops.h"
#include "runtime/dit/dit_weights.h"
#include "runtime/model/safetensors.h"

namespace tern::runtime {

// The decoder's tensors (names and shapes, diffusers' current attention
// names); with `encoder`, also the encoder's and quant_conv, so that the
// list is a whole AutoencoderKL checkpoint (tern-mkmodel writes that).
// `latent_size` does not enter the shapes.
std::vector<DitTensorSpec> VaeTensorLayout(const VaeDecoderConfig& config, bool encoder);

class VaeDecoder {
 public:
  // Reads <vae_dir>/diffusion_pytorch_model.safetensors (or its index).
  // `ops` is borrowed and must outlive the decoder; `latent_size` is the
  // latents' side (the DiT's image_size). Errors name the tensor.
  static absl::StatusOr<std::unique_ptr<VaeDecoder>> Load(const std::string& vae_dir, const VaeDecoderConfig& config,
                                                          int32_t latent_size, DitOps* ops);
  // The same from an open store (which may be closed afterwards).
  static absl::StatusOr<std::unique_ptr<VaeDecoder>> Create(const VaeDecoderConfig& config, int32_t latent_size,
                                                            const WeightStore& store, DitOps* ops);
  ~VaeDecoder();

  const VaeDecoderConfig& config() const { return config_; }
  int32_t latent_size() const { return latent_size_; }
  int32_t image_size() const { return latent_size_ * config_.upscale(); }
  int64_t latent_elements() const { return int64_t(config_.latent_channels) * latent_size_ * latent_size_; }
  int64_t image_elements() const { return int64_t(config_.out_channels) * image_size() * image_size(); }
  // Bytes the decoder's prepared weights hold in the ops' memory.
  size_t weight_bytes() const;

  // latents [B, latent_channels, h, h] -> images [B, out_channels, H, H]
  // (host fp32, planar). INVALID_ARGUMENT for sizes that do not fit; the
  // pass's error otherwise.
  absl::Status Decode(absl::Span<const float> latents, absl::Span<float> images);

 private:
  struct Weights;
  VaeDecoder(const VaeDecoderConfig& config, int32_t latent_size, DitOps* ops, std::unique_ptr<Weights> weights);

  VaeDecoderConfig config_;
  int32_t latent_size_;
  DitOps* ops_;
  std::unique_ptr<Weights> weights_;
  std::vector<float> host_in_, host_out_;  // NHWC staging of one pass
};

}  // namespace tern::runtime
