// The tensors a Llama-family checkpoint holds, by Hugging Face name and
// shape: the one list that the loader checks a directory against and that
// tern-mkmodel writes. Linear weights are [out_features, in_features].
#pragma once

#include <string>
#include <vector>

#include "runtime/model/dtype.h"
#include "runtime/model/hf_config.h"
#include "runtime/model/safetensors.h"

namespace tern::runtime {

enum class TensorRole {
  kEmbedding,  // [vocab, hidden]
  kNorm,       // [hidden] or [head_dim]
  kLinear,     // [out, in]
  kBias,       // [out]
  kRouter,     // MoE gate [experts, hidden]
};

struct LayoutEntry {
  TensorSpec spec;
  TensorRole role;
};

// Every tensor of the model `config` describes, stored as `dtype`.
std::vector<LayoutEntry> LlamaFamilyLayout(const HfConfig& config, DType dtype);

// Names of one decoder layer's tensors.
struct LayerNames {
  std::string input_norm, q, k, v, o, q_bias, k_bias, v_bias, post_norm;
  std::string gate, up, down;  // dense MLP
  std::string router;          // MoE
  std::string ExpertGate(int e) const;
  std::string ExpertUp(int e) const;
  std::string ExpertDown(int e) const;
  std::string prefix;
};
LayerNames NamesOfLayer(int layer);

inline constexpr char kEmbedTokens[] = "model.embed_tokens.weight";
inline constexpr char kFinalNorm[] = "model.norm.weight";
inline constexpr char kLmHead[] = "lm_head.weight";

}  // namespace tern::runtime
