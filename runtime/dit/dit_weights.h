// The tensors of a DiT checkpoint: the one list of names and shapes the
// loader checks a model directory against, in two spellings, and the
// loaded weights prepared by a DitOps.
//
// Naming kTern is models/tern-demo-dit's (tools/train/dit/dit_model.py);
// kOriginal is the state dict of the original DiT code (facebookresearch/DiT:
// x_embedder.proj, t_embedder.mlp.0 / .2, y_embedder.embedding_table,
// adaLN_modulation.1). The two hold the same tensors with the same shapes
// and meaning; DetectDitNaming picks one from the names present.
//
// kDiffusers is diffusers' DiTTransformer2DModel (transformer/ of a
// DiTPipeline), which splits and repeats some of them:
//   pos_embed.proj                      the patch embedding (pos_embed.pos_embed, a
//                                       non-persistent buffer, is computed when absent)
//   transformer_blocks.{i}.norm1.emb.timestep_embedder.linear_1 / .linear_2
//   transformer_blocks.{i}.norm1.emb.class_embedder.embedding_table
//                                       every block's own conditioning embedders
//                                       (converted checkpoints hold copies of one)
//   transformer_blocks.{i}.norm1.linear the block's adaLN projection [6 D, D]
//   transformer_blocks.{i}.attn1.to_q / to_k / to_v   (stacked into tern's qkv)
//   transformer_blocks.{i}.attn1.to_out.0, ff.net.0.proj, ff.net.2
//   proj_out_1 (final adaLN [2 D, D]), proj_out_2 (final linear)
// The final layer's conditioning is block 0's (diffusers:
// transformer_blocks[0].norm1.emb). A block whose embedders equal block 0's
// byte for byte shares block 0's conditioning; any other block computes its
// own, as diffusers does.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/dit/dit_config.h"
#include "runtime/dit/dit_ops.h"
#include "runtime/model/safetensors.h"

namespace tern::runtime {

enum class DitNaming { kTern, kOriginal, kDiffusers };

// Stacks [rows_i, ...] tensors (each read as rows_i x cols, cols equal) into
// one [sum rows_i, cols] view named `name` over `storage` (which it
// overwrites and must outlive the view): bytes as stored when every part has
// the same dtype, else converted to F32. INVALID_ARGUMENT naming the part
// whose columns differ.
absl::StatusOr<TensorView> StackTensorRows(const std::vector<TensorView>& parts, const std::string& name,
                                           std::vector<uint8_t>* storage);

struct DitTensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  // Only pos_embed: a fixed table, computed (DitPositionTable) when absent.
  bool optional = false;
};

// Every tensor of the model `config` describes, in a fixed order that is the
// same for kTern and kOriginal (entry i of one is entry i of the other);
// kDiffusers lists diffusers' tensors (q, k, v apart, embedders per block).
std::vector<DitTensorSpec> DitTensorLayout(const DitConfig& config, DitNaming naming);

// kDiffusers for a diffusers-layout config; else kOriginal when the store
// holds "x_embedder.proj.weight", else kTern.
DitNaming DetectDitNaming(const DitConfig& config, const WeightStore& store);

// The fixed 2-D sin-cos position table [grid*grid, hidden] (MAE/DiT), for
// token k = row * grid + col, w_i = 10000^(-i / (hidden/4)), i < hidden/4:
// [sin(col w_i), cos(col w_i), sin(row w_i), cos(row w_i)], each hidden/4
// wide; float64, rounded to float32. hidden must be a multiple of 4.
std::vector<float> DitPositionTable(int32_t hidden, int32_t grid);

enum class DitLinearRole {
  kPatchEmbed,     // tokens from patches
  kTimestepEmbed,  // the timestep MLP's two layers
  kAdaLN,          // a block's modulation projection [6 D, D]
  kQkv,            // [3 D, D] (diffusers: to_q, to_k, to_v, each [D, D])
  kAttentionOut,   // [D, D]
  kMlpFc1,         // [mlp_hidden, D]
  kMlpFc2,         // [D, mlp_hidden]
  kFinalAdaLN,     // [2 D, D]
  kFinalLinear,    // [p p C_out, D]
};

struct DitLinearModule {
  std::string name;  // as in the checkpoint, without ".weight"
  DitLinearRole role;
  int32_t block = -1;  // the block of a block layer or of a diffusers block's embedder, else -1
  int64_t out = 0, in = 0;
  // adaLN, qkv, attention out, MLP: what a uniform W8A8 scheme quantizes.
  bool block_layer() const {
    return role == DitLinearRole::kAdaLN || role == DitLinearRole::kQkv || role == DitLinearRole::kAttentionOut ||
           role == DitLinearRole::kMlpFc1 || role == DitLinearRole::kMlpFc2;
  }
};

// Every linear layer of the model `config` describes, in load order
// (diffusers: to_q, to_k and to_v as three entries; each block's timestep
// embedder).
std::vector<DitLinearModule> DitLinearModules(const DitConfig& config, DitNaming naming);

class DitLinearPlan;  // dit_linear_plan.h

// The conditioning embedders: timestep MLP and class table.
struct DitConditioningWeights {
  std::unique_ptr<DitLinear> t_fc1;        // [hidden, frequency_embedding_size]
  std::unique_ptr<DitLinear> t_fc2;        // [hidden, hidden]
  std::unique_ptr<DitTable> class_table;   // [num_classes (+1 null), hidden]
};

struct DitBlockWeights {
  // [6 hidden, hidden]: shift, scale, gate (attention), shift, scale, gate
  // (MLP). Null when DitWeights::modulations holds it.
  std::unique_ptr<DitLinear> adaln;
  std::unique_ptr<DitLinear> qkv;    // [3 hidden, hidden]
  std::unique_ptr<DitLinear> proj;   // [hidden, hidden]
  std::unique_ptr<DitLinear> fc1;    // [mlp_hidden, hidden]
  std::unique_ptr<DitLinear> fc2;    // [hidden, mlp_hidden]
  // The block's own conditioning embedders (diffusers checkpoints whose
  // blocks differ); null: the model's.
  std::unique_ptr<DitConditioningWeights> cond;
};

struct DitWeights {
  std::unique_ptr<DitLinear> patch_embed;  // [hidden, C * p * p]
  std::unique_ptr<DitTable> pos_embed;     // [tokens, hidden]
  DitConditioningWeights cond;             // the final layer's and (unless their own) the blocks'
  std::vector<DitBlockWeights> blocks;     // [depth]
  std::unique_ptr<DitLinear> final_adaln;  // [2 hidden, hidden]: shift, scale; null when in `modulations`
  std::unique_ptr<DitLinear> final_linear; // [p * p * out_channels, hidden]
  // Every block's adaLN projection, stacked by rows [6 hidden depth, hidden]
  // (then the final layer's [2 hidden, hidden] too when it runs the same
  // scheme; final_adaln is null then): one GEMM a pass instead of depth + 1
  // small ones. Made when every block reads the model's conditioning (no
  // block has embedders of its own) and the blocks' adaLN layers run one
  // scheme; block i's modulation is columns [6 hidden i, 6 hidden (i + 1))
  // of its output, the final layer's the 2 hidden after the blocks'. Null
  // otherwise (then each block's adaln). Stacking changes no arithmetic of
  // an output column: it reads the same weight row, bias and (W8A8) per-row
  // scale as in the layer alone, and the same per-token activation scale.
  std::unique_ptr<DitLinear> modulations;

  // Checks every tensor of DitTensorLayout (present, exact shape, a float
  // dtype) and prepares it with `ops`. INVALID_ARGUMENT / NOT_FOUND naming the
  // tensor. `store` holds the DiT's tensors (transformer/ in the diffusers
  // layout). `plan` (null: every layer dense) says which linear layers are
  // quantized at load by round-to-nearest (DitOps::PrepareQuantizedLinear);
  // before anything is prepared, FAILED_PRECONDITION when the ops cannot
  // run one of its schemes (DitOps::CheckWeightScheme), and errors from the
  // quantizer or the ops name the layer.
  // `stack_modulations` false keeps one adaLN linear per block (for tests
  // comparing the two).
  static absl::StatusOr<DitWeights> Load(const DitConfig& config, const WeightStore& store, DitOps* ops,
                                         const DitLinearPlan* plan = nullptr, bool stack_modulations = true);

  // Bytes every prepared weight holds in the ops' memory.
  size_t bytes() const;
};

}  // namespace tern::runtime
