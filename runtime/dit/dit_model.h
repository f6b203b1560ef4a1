// The diffusion transformer (DiT, Peebles & Xie 2023), written once against
// DitOps. For a batch of samples, each with its own timestep and class:
//
//   tokens = Linear(Patchify(x)) + pos_embed             [B*L, D]
//   cond   = fc2(SiLU(fc1(TimestepEmbedding(t)))) + class_table[y]   [B, D]
//   per block (adaLN-Zero; a diffusers block with embedders of its own
//   computes its own cond from them):
//     shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = adaLN(SiLU(cond))
//     tokens += gate_a * proj(Attention(qkv(LN(tokens) * (1 + scale_a) + shift_a)))
//     tokens += gate_m * fc2(GELU(fc1(LN(tokens) * (1 + scale_m) + shift_m)))
//   shift, scale = final_adaLN(SiLU(cond))
//   eps = Unpatchify(final_linear(LN(tokens) * (1 + scale) + shift))[:, :C]
//
// Each sample's rows go through the same arithmetic whatever else is in the
// batch, so a sample's eps does not depend on its batch mates (the serving
// engine batches samples at different denoising steps, and the conditional
// and unconditional halves of classifier-free guidance).
//
// Not thread-safe: one thread drives a model (and its DitOps).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/dit/dit_attention_plan.h"
#include "runtime/dit/dit_config.h"
#include "runtime/dit/dit_fast_attention.h"
#include "runtime/dit/dit_ops.h"
#include "runtime/dit/dit_linear_plan.h"
#include "runtime/dit/dit_weights.h"
#include "runtime/model/weight_scheme.h"

namespace tern::runtime {

// One forward pass's inputs, host memory, one entry per sample (B samples).
struct DitBatch {
  absl::Span<const float> x;          // [B, C, H, W] row-major: the noisy samples
  absl::Span<const float> timesteps;  // [B] diffusion timesteps (the model takes them as real numbers)
  absl::Span<const int32_t> labels;   // [B] class ids in [0, num_classes), or the null class
  // [B] or empty (exact attention for every row): each row's DiTFastAttn
  // state (dit_fast_attention.h), for a model with an attention plan.
  absl::Span<const DitRowAttention> attention;

  int64_t size() const { return static_cast<int64_t>(timesteps.size()); }
};

struct DitModelOptions {
  // What the linear layers run as (dit_linear_plan.h): as stored by default.
  WeightSchemeRequest weight_scheme;
  // With a mixed weight_scheme: this plan instead of reading the file
  // weight_scheme.plan_path names (tools building plans in memory).
  const MixedPrecisionPlan* plan = nullptr;
  // DiTFastAttn (dit_attention_plan.h, checked against the model's config at
  // load) and the forward rows its caches are allocated for at load (the
  // engine's row budget). Null: exact attention always.
  std::shared_ptr<const DitAttentionPlan> attention_plan;
  int32_t attention_cache_rows = 64;
  // One GEMM for every adaLN projection where the model allows it
  // (DitWeights::modulations); false keeps one per block.
  bool stack_modulations = true;
  // W8A8 layers whose input is a LayerNorm + modulate's output (qkv, fc1,
  // the final linear) get it quantized per row by that op
  // (DitOps::LayerNormModulate into a QuantizedScratch tensor) instead of
  // by a pass of their own: the same codes, one pass over the activations
  // fewer. qkv's stays unfused in DiTFastAttn passes, which gather its rows
  // first. false: every W8A8 layer quantizes its own input.
  bool fuse_activation_quantization = true;
};

class DitModel {
 public:
  // Reads the model directory's config and the DiT's safetensors weights
  // (either layout: dit_config.h), quantizing linear layers as `options`
  // say. `ops` is borrowed and must outlive the model. Errors name the file,
  // field, tensor, plan or layer. The VAE (if any) is VaeDecoder's.
  static absl::StatusOr<std::unique_ptr<DitModel>> Load(const std::string& model_dir, DitOps* ops,
                                                        const DitModelOptions& options = {});
  // The same from a parsed config and an open store (the store may be
  // closed afterwards: weights are copied into `ops`).
  static absl::StatusOr<std::unique_ptr<DitModel>> Create(const DitConfig& config, const WeightStore& store,
                                                          DitOps* ops, const DitModelOptions& options = {});

  const DitConfig& config() const { return config_; }
  // Per linear layer, what it runs as; the checkpoint's naming of them.
  const DitLinearPlan& linear_plan() const { return plan_; }
  DitNaming naming() const { return naming_; }
  // The attention plan's caches, or null without a plan.
  DitAttentionCache* attention_cache() { return attention_.get(); }
  // Bytes the DiT's prepared weights hold in the ops' memory (device memory
  // on a GPU), in the schemes they run as.
  size_t weight_bytes() const { return weights_.bytes(); }

  // eps [B, C, H, W] (host fp32; the noise prediction: the first C output
  // channels of a learn_sigma model). INVALID_ARGUMENT for inconsistent
  // sizes, a class outside the table, or a non-finite timestep.
  absl::Status Forward(const DitBatch& batch, absl::Span<float> eps);

 private:
  DitModel(const DitConfig& config, DitOps* ops, DitWeights weights, DitLinearPlan plan, DitNaming naming,
           bool fuse_activation_quantization)
      : config_(config),
        ops_(ops),
        weights_(std::move(weights)),
        plan_(std::move(plan)),
        naming_(naming),
        fuse_activation_quantization_(fuse_activation_quantization) {}

  DitConfig config_;
  DitOps* ops_;
  DitWeights weights_;
  DitLinearPlan plan_;
  DitNaming naming_;
  bool fuse_activation_quantization_;
  std::unique_ptr<DitAttentionCache> attention_;
};

}  // namespace tern::runtime
