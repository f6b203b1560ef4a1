// A Hugging Face model's config.json, parsed into the fields tern's model
// definitions use. Architectures: LlamaForCausalLM, MistralForCausalLM,
// Qwen2ForCausalLM, MixtralForCausalLM.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace tern::runtime {

// rope_scaling from config.json; type "llama3" is Llama-3.1's frequency-band
// scaling, "linear" divides positions by factor.
struct RopeScaling {
  std::string type;  // "", "linear", "llama3", "dynamic"
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 0;
};

struct HfConfig {
  std::string architecture;  // architectures[0]
  std::string model_type;    // "llama", "mistral", "qwen2", "mixtral"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // defaults to num_attention_heads
  int64_t head_dim = 0;             // defaults to hidden_size / num_attention_heads
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  std::optional<RopeScaling> rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v projections carry a bias (Qwen2: always)
  int64_t sliding_window = 0;   // 0: none
  std::string torch_dtype;      // "float32", "float16", "bfloat16"
  int64_t bos_token_id = -1;
  int64_t eos_token_id = -1;
  // MoE (Mixtral): 0 experts means a dense MLP.
  int64_t num_local_experts = 0;
  int64_t num_experts_per_tok = 0;
};

// Parses config.json text. INVALID_ARGUMENT for malformed JSON, a missing or
// non-positive required field, an unsupported architecture, or inconsistent
// head counts; the message names the field.
absl::StatusOr<HfConfig> ParseHfConfig(const std::string& json_text);

// Reads <model_dir>/config.json and parses it. NOT_FOUND when absent.
absl::StatusOr<HfConfig> LoadHfConfig(const std::string& model_dir);

// Every architecture tern runs.
bool IsSupportedArchitecture(const std::string& architecture);

}  // namespace tern::runtime
