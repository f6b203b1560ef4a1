// Model shapes tern-mkmodel can write, and the config.json each produces.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace tern::tools {

struct ModelShape {
  int64_t hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0, vocab = 0;
  int64_t max_positions = 0;
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-5;
  int64_t experts = 0, experts_per_token = 0;  // MoE only
  bool tie_embeddings = false;
  bool attention_bias = false;
};

// `arch` is llama|mistral|qwen2|mixtral; `preset` tiny|100m|1b|llama-2-7b|llama-3-8b.
// `vocab` overrides the preset's vocabulary size when > 0 (the tokenizer's).
absl::StatusOr<ModelShape> ShapeFor(const std::string& arch, const std::string& preset, int64_t vocab);

// config.json for a shape. bos/eos < 0 are omitted.
nlohmann::json HfConfigJson(const std::string& arch, const ModelShape& shape, const std::string& dtype,
                            int64_t bos_id, int64_t eos_id);

}  // namespace tern::tools
