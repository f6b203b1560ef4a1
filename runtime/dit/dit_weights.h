// The tensors of a DiT checkpoint: the one list of names and shapes the
// loader checks a model directory against, in two spellings, and the
// loaded weights prepared by a DitOps.
//
// Naming kTern is models/tern-demo-dit's (tools/train/dit/dit_model.py);
// kOriginal is the state dict of the original DiT code (facebookresearch/DiT:
// x_embedder.proj, t_embedder.mlp.0 / .2, y_embedder.embedding_table,
// adaLN_modulation.1). The two hold the same tensors with the same shapes
// and meaning; DetectDitNaming picks one from the names present.
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

enum class DitNaming { kTern, kOriginal };

struct DitTensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  // Only pos_embed: a fixed table, computed (DitPositionTable) when absent.
  bool optional = false;
};

// Every tensor of the model `config` describes, in a fixed order that is the
// same for both namings (entry i of one is entry i of the other).
std::vector<DitTensorSpec> DitTensorLayout(const DitConfig& config, DitNaming naming);

// kOriginal when the store holds "x_embedder.proj.weight", else kTern.
DitNaming DetectDitNaming(const WeightStore& store);

// The fixed 2-D sin-cos position table [grid*grid, hidden] (MAE/DiT), for
// token k = row * grid + col, w_i = 10000^(-i / (hidden/4)), i < hidden/4:
// [sin(col w_i), cos(col w_i), sin(row w_i), cos(row w_i)], each hidden/4
// wide; float64, rounded to float32. hidden must be a multiple of 4.
std::vector<float> DitPositionTable(int32_t hidden, int32_t grid);

struct DitBlockWeights {
  std::unique_ptr<DitLinear> adaln;  // [6 hidden, hidden]: shift, scale, gate (attention), shift, scale, gate (MLP)
  std::unique_ptr<DitLinear> qkv;    // [3 hidden, hidden]
  std::unique_ptr<DitLinear> proj;   // [hidden, hidden]
  std::unique_ptr<DitLinear> fc1;    // [mlp_hidden, hidden]
  std::unique_ptr<DitLinear> fc2;    // [hidden, mlp_hidden]
};

struct DitWeights {
  std::unique_ptr<DitLinear> patch_embed;  // [hidden, C * p * p]
  std::unique_ptr<DitTable> pos_embed;     // [tokens, hidden]
  std::unique_ptr<DitLinear> t_fc1;        // [hidden, frequency_embedding_size]
  std::unique_ptr<DitLinear> t_fc2;        // [hidden, hidden]
  std::unique_ptr<DitTable> class_table;   // [num_classes (+1 null), hidden]
  std::vector<DitBlockWeights> blocks;     // [depth]
  std::unique_ptr<DitLinear> final_adaln;  // [2 hidden, hidden]: shift, scale
  std::unique_ptr<DitLinear> final_linear; // [p * p * out_channels, hidden]

  // Checks every tensor of DitTensorLayout (present, exact shape, a float
  // dtype) and prepares it with `ops`. INVALID_ARGUMENT / NOT_FOUND naming the
  // tensor.
  static absl::StatusOr<DitWeights> Load(const DitConfig& config, const WeightStore& store, DitOps* ops);
};

}  // namespace tern::runtime
