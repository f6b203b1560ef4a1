#include "runtime/dit/dit_model.h"

#include <cmath>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "runtime/base/status_macros.h"

namespace tern::runtime {
namespace {

// Workspace roles (DitOps::Scratch slots).
enum Slot : int {
  kImages,          // [B, C*H*W]
  kPatches,         // [B*L, C*p*p]
  kTokens,          // [B*L, D] the residual stream
  kTimeFeatures,    // [B, frequency_embedding_size]
  kTimeHidden,      // [B, D]
  kCond,            // [B, D]
  kClassEmbedding,  // [B, D]
  kCondSilu,        // [B, D]
  kModulation,      // [B, 6 D]
  kNormed,          // [B*L, D]
  kQkv,             // [B*L, 3 D]
  kAttention,       // [B*L, D]
  kBranch,          // [B*L, D] a sublayer's output before the gated add
  kMlp,             // [B*L, mlp_hidden]
  kFinalModulation, // [B, 2 D]
  kOutPatches,      // [B*L, p*p*C_out]
  kEps,             // [B, C*H*W]
  kBlockCond,       // [B, D] a block's own conditioning (diffusers checkpoints whose blocks differ)
  kBlockCondSilu,   // [B, D]
  kNextModulation,  // [B, 6 D] the next block's, made while this block's gate_m is still needed
  kAllModulations,  // [B, (6 depth + 2) D] every block's and the final layer's (DitWeights::modulations)
};
// QuantizedScratch slots (their own namespace).
enum QuantizedSlot : int {
  kNormedCodes,  // [B*L, D] a LayerNorm + modulate's output quantized for the W8A8 layer after it
};

}  // namespace

absl::StatusOr<std::unique_ptr<DitModel>> DitModel::Load(const std::string& model_dir, DitOps* ops,
                                                         const DitModelOptions& options) {
  ASSIGN_OR_RETURN(const DitConfig config, LoadDitConfig(model_dir));
  const std::string dir = config.transformer_dir().empty()
                              ? model_dir
                              : (std::filesystem::path(model_dir) / config.transformer_dir()).string();
  ASSIGN_OR_RETURN(const auto store, config.layout == DitLayout::kDiffusers
                                         ? WeightStore::Open(dir, "diffusion_pytorch_model")
                                         : WeightStore::Open(dir));
  return Create(config, *store, ops, options);
}

absl::StatusOr<std::unique_ptr<DitModel>> DitModel::Create(const DitConfig& config, const WeightStore& store,
                                                           DitOps* ops, const DitModelOptions& options) {
  const DitNaming naming = DetectDitNaming(config, store);
  const bool in_memory = options.plan != nullptr && options.weight_scheme.kind == WeightSchemeRequest::Kind::kMixed;
  ASSIGN_OR_RETURN(DitLinearPlan plan,
                   in_memory ? DitLinearPlan::FromMixed(config, naming, *options.plan, options.weight_scheme.plan_path)
                             : DitLinearPlan::Create(config, naming, options.weight_scheme));
  ASSIGN_OR_RETURN(DitWeights weights, DitWeights::Load(config, store, ops, &plan, options.stack_modulations));
  auto model = std::unique_ptr<DitModel>(new DitModel(config, ops, std::move(weights), std::move(plan), naming,
                                                       options.fuse_activation_quantization));
  if (options.attention_plan != nullptr) {
    if (options.attention_plan->num_layers != config.depth) {
      return absl::InvalidArgumentError(absl::StrCat(options.attention_plan->source, ": layers: ",
                                                     options.attention_plan->num_layers, ", but the model has ",
                                                     config.depth, " blocks"));
    }
    ASSIGN_OR_RETURN(model->attention_, DitAttentionCache::Create(options.attention_plan, config, ops,
                                                                  options.attention_cache_rows));
  }
  return model;
}

absl::Status DitModel::Forward(const DitBatch& batch, absl::Span<float> eps) {
  const DitConfig& c = config_;
  const int64_t b = batch.size();
  const int64_t pixels = c.sample_elements();
  if (int64_t(batch.labels.size()) != b || int64_t(batch.x.size()) != b * pixels ||
      int64_t(eps.size()) != b * pixels) {
    return absl::InvalidArgumentError(absl::StrCat("dit forward: ", b, " timesteps, ", batch.labels.size(),
                                                   " labels, ", batch.x.size(), " input and ", eps.size(),
                                                   " output values; expected ", pixels, " values a sample"));
  }
  for (int64_t i = 0; i < b; ++i) {
    const int32_t y = batch.labels[i];
    if (y < 0 || (y >= c.num_classes && y != c.null_class)) {
      const std::string null_class = c.has_null_class() ? absl::StrCat(" or the null class ", c.null_class) : "";
      return absl::InvalidArgumentError(absl::StrCat("dit forward: sample ", i, " has class ", y, "; expected [0, ",
                                                     c.num_classes, ")", null_class));
    }
    if (!std::isfinite(batch.timesteps[i])) {
      return absl::InvalidArgumentError(absl::StrCat("dit forward: sample ", i, " has a non-finite timestep"));
    }
  }
  // DiTFastAttn: rows at a plan step follow it; the rows' plan steps (and
  // which rows share a guidance pair) fix the pass's ops: its graph variant.
  bool fast = false;
  uint64_t variant = 0;
  if (!batch.attention.empty()) {
    if (int64_t(batch.attention.size()) != b) {
      return absl::InvalidArgumentError(
          absl::StrCat("dit forward: ", batch.attention.size(), " attention rows for ", b, " samples"));
    }
    for (int64_t i = 0; i < b; ++i) {
      const DitRowAttention& a = batch.attention[i];
      variant = (variant ^ uint64_t(int64_t(a.plan_step) * 2 + (a.cond_row >= 0))) * 0x100000001b3ULL + 0x9e37ULL;
      if (a.plan_step < 0) continue;
      if (attention_ == nullptr || a.plan_step >= attention_->plan().num_steps || a.slot < 0 ||
          a.slot >= attention_->capacity() || a.cond_row >= b) {
        return absl::InvalidArgumentError(absl::StrCat("dit forward: sample ", i, " has attention plan step ",
                                                       a.plan_step, " and cache slot ", a.slot,
                                                       attention_ == nullptr ? ", but the model has no plan" : ""));
      }
      fast = true;
    }
  }
  if (b == 0) return absl::OkStatus();

  DitOps& ops = *ops_;
  const int64_t tokens = c.num_tokens();
  const int64_t rows = b * tokens;
  const int64_t d = c.hidden_size;
  const float ln_eps = static_cast<float>(c.layernorm_eps);
  const DitPatchGeometry in_geometry{c.in_channels, c.image_size, c.patch_size};
  const DitPatchGeometry out_geometry{c.out_channels(), c.image_size, c.patch_size};
  const DitAttentionParams attention{c.num_heads, c.head_dim(),
                                     static_cast<float>(1.0 / std::sqrt(double(c.head_dim())))};

  RETURN_IF_ERROR(
      ops.BeginStep({batch.timesteps, batch.labels, DitPass::kForward, 0, {c.image_size, c.image_size}, false,
                     fast ? variant | 1 : 0}));
  // Tokens: patch embedding (a linear over unfolded patches) + positions.
  Tensor images = ops.Scratch(kImages, b, pixels);
  ops.CopyFromHost(batch.x.data(), images);
  Tensor patches = ops.Scratch(kPatches, rows, c.patch_features());
  ops.Patchify(images, in_geometry, patches);
  Tensor x = ops.Scratch(kTokens, rows, d);
  ops.Linear(patches, *weights_.patch_embed, x);
  ops.AddPositions(x, *weights_.pos_embed);

  // Conditioning: timestep MLP + class embedding, per sample; SiLU of it
  // feeds every adaLN projection.
  Tensor features = ops.Scratch(kTimeFeatures, b, c.frequency_embedding_size);
  ops.TimestepEmbedding(10000.0, double(c.timestep_freq_shift), features);
  Tensor time_hidden = ops.Scratch(kTimeHidden, b, d);
  Tensor class_embedding = ops.Scratch(kClassEmbedding, b, d);
  const auto conditioning = [&](const DitConditioningWeights& w, Tensor cond, Tensor cond_silu) {
    ops.Linear(features, *w.t_fc1, time_hidden);
    ops.Silu(time_hidden, time_hidden);
    ops.Linear(time_hidden, *w.t_fc2, cond);
    ops.EmbedClasses(*w.class_table, class_embedding);
    ops.Add(cond, class_embedding);
    ops.Silu(cond, cond_silu);
  };
  Tensor cond = ops.Scratch(kCond, b, d);
  Tensor cond_silu = ops.Scratch(kCondSilu, b, d);
  conditioning(weights_.cond, cond, cond_silu);

  // Modulations: with DitWeights::modulations one GEMM makes every block's
  // (and the final layer's, unless it has its own); otherwise two buffers, block i's in
  // modulations[i % 2]: a block's MLP gated add is fused with the LayerNorm
  // + modulate that follows it (the next block's, or the final layer's), so
  // the next modulation is made before this block's gate_m is spent.
  const size_t num_blocks = weights_.blocks.size();
  const bool stacked = weights_.modulations != nullptr;
  Tensor all_modulations;
  if (stacked) {
    const int64_t final_columns = weights_.final_adaln == nullptr ? 2 * d : 0;
    all_modulations = ops.Scratch(kAllModulations, b, 6 * d * int64_t(num_blocks) + final_columns);
    ops.Linear(cond_silu, *weights_.modulations, all_modulations);
  }
  const Tensor modulations[2] = {stacked ? Tensor() : ops.Scratch(kModulation, b, 6 * d),
                                 stacked ? Tensor() : ops.Scratch(kNextModulation, b, 6 * d)};
  // Block i's [B, 6 D] modulation, made now unless stacked.
  const auto block_modulation = [&](size_t i) -> Tensor {
    if (stacked) return all_modulations.Columns(6 * d * int64_t(i), 6 * d);
    const DitBlockWeights& block = weights_.blocks[i];
    Tensor block_cond_silu = cond_silu;
    if (block.cond != nullptr) {
      block_cond_silu = ops.Scratch(kBlockCondSilu, b, d);
      conditioning(*block.cond, ops.Scratch(kBlockCond, b, d), block_cond_silu);
    }
    ops.Linear(block_cond_silu, *block.adaln, modulations[i % 2]);
    return modulations[i % 2];
  };
  // The final layer's [B, 2 D] shift and scale, made now unless stacked.
  const auto final_modulation = [&]() -> Tensor {
    if (weights_.final_adaln == nullptr) return all_modulations.Columns(6 * d * int64_t(num_blocks), 2 * d);
    Tensor out = ops.Scratch(kFinalModulation, b, 2 * d);
    ops.Linear(cond_silu, *weights_.final_adaln, out);
    return out;
  };
  Tensor normed = ops.Scratch(kNormed, rows, d);
  Tensor qkv = ops.Scratch(kQkv, rows, 3 * d);
  Tensor attended = ops.Scratch(kAttention, rows, d);
  Tensor branch = ops.Scratch(kBranch, rows, d);
  Tensor mlp = ops.Scratch(kMlp, rows, c.mlp_hidden());
  const float mlp_ln_eps = static_cast<float>(c.mlp_layernorm_eps);
  // Where a LayerNorm + modulate writes its output for `consumer`: quantized
  // for a W8A8 layer (fuse_activation_quantization), else `normed`.
  const auto norm_output = [&](const DitLinear& consumer, bool may_quantize) {
    const DType codes = QuantizedInputType(consumer.scheme());
    if (!fuse_activation_quantization_ || !may_quantize || codes == DType::kF32) return normed;
    return ops.QuantizedScratch(kNormedCodes, rows, d, codes);
  };
  const auto attention_input = [&](size_t block) -> Tensor {
    if (block == num_blocks) return norm_output(*weights_.final_linear, true);
    return norm_output(*weights_.blocks[block].qkv, /*may_quantize=*/!fast);  // DiTFastAttn gathers normed's rows
  };
  Tensor modulation = num_blocks == 0 ? final_modulation() : block_modulation(0);
  // Here `in` = LN(x) * (1 + scale_a) + shift_a, as normed or quantized.
  Tensor in = attention_input(0);
  ops.LayerNormModulate(x, modulation.Columns(0, d), modulation.Columns(d, d), ln_eps, in);
  for (size_t i = 0; i < num_blocks; ++i) {
    const DitBlockWeights& block = weights_.blocks[i];
    if (fast) {
      attention_->RunLayer(ops, int32_t(i), batch.attention, *block.qkv, *block.proj, attention, in, branch);
    } else {
      ops.Linear(in, *block.qkv, qkv);
      ops.Attention(qkv, attention, attended);
      ops.Linear(attended, *block.proj, branch);
    }
    in = norm_output(*block.fc1, true);
    ops.GatedAddLayerNormModulate(x, branch, modulation.Columns(2 * d, d), modulation.Columns(3 * d, d),
                                  modulation.Columns(4 * d, d), mlp_ln_eps, in);
    ops.LinearGeluTanh(in, *block.fc1, mlp);
    ops.Linear(mlp, *block.fc2, branch);
    // x += gate_m * branch, then the next LayerNorm + modulate: the next
    // block's attention input, or the final layer's.
    const Tensor next = i + 1 < num_blocks ? block_modulation(i + 1) : final_modulation();
    in = attention_input(i + 1);
    ops.GatedAddLayerNormModulate(x, branch, modulation.Columns(5 * d, d), next.Columns(0, d), next.Columns(d, d),
                                  ln_eps, in);
    modulation = next;
  }

  Tensor out_patches = ops.Scratch(kOutPatches, rows, int64_t(c.patch_size) * c.patch_size * c.out_channels());
  ops.Linear(in, *weights_.final_linear, out_patches);
  Tensor out = ops.Scratch(kEps, b, pixels);
  ops.Unpatchify(out_patches, out_geometry, c.in_channels, out);
  RETURN_IF_ERROR(ops.FinishStep());
  ops.ReadToHost(out, eps.data());
  return absl::OkStatus();
}

}  // namespace tern::runtime
