#include "tools/mkmodel/model_presets.h"

#include "absl/strings/str_cat.h"

namespace tern::tools {

absl::StatusOr<ModelShape> ShapeFor(const std::string& arch, const std::string& preset, int64_t vocab) {
  ModelShape s;
  if (preset == "tiny") {
    s = {.hidden = 64, .intermediate = 160, .layers = 2, .heads = 4, .kv_heads = 2, .vocab = 512,
         .max_positions = 2048};
  } else if (preset == "100m") {  // ~106M parameters: the CPU benchmark shape
    s = {.hidden = 768, .intermediate = 2048, .layers = 8, .heads = 12, .kv_heads = 12, .vocab = 32000,
         .max_positions = 2048};
  } else if (preset == "1b") {  // TinyLlama-1.1B
    s = {.hidden = 2048, .intermediate = 5632, .layers = 22, .heads = 32, .kv_heads = 4, .vocab = 32000,
         .max_positions = 2048};
  } else if (preset == "llama-2-7b") {
    s = {.hidden = 4096, .intermediate = 11008, .layers = 32, .heads = 32, .kv_heads = 32, .vocab = 32000,
         .max_positions = 4096};
  } else if (preset == "llama-3-8b") {
    s = {.hidden = 4096, .intermediate = 14336, .layers = 32, .heads = 32, .kv_heads = 8, .vocab = 128256,
         .max_positions = 8192, .rope_theta = 500000.0};
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown preset \"", preset, "\" (tiny, 100m, 1b, llama-2-7b, llama-3-8b)"));
  }
  if (arch == "llama" || arch == "mistral") {
  } else if (arch == "qwen2") {
    s.attention_bias = true;
    s.tie_embeddings = preset == "tiny";
    s.rms_norm_eps = 1e-6;
  } else if (arch == "mixtral") {
    s.experts = preset == "tiny" ? 4 : 8;
    s.experts_per_token = 2;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown arch \"", arch, "\" (llama, mistral, qwen2, mixtral)"));
  }
  if (vocab > 0) s.vocab = vocab;
  return s;
}

nlohmann::json HfConfigJson(const std::string& arch, const ModelShape& s, const std::string& dtype,
                            int64_t bos_id, int64_t eos_id) {
  static const std::map<std::string, std::pair<const char*, const char*>> kNames = {
      {"llama", {"LlamaForCausalLM", "llama"}},
      {"mistral", {"MistralForCausalLM", "mistral"}},
      {"qwen2", {"Qwen2ForCausalLM", "qwen2"}},
      {"mixtral", {"MixtralForCausalLM", "mixtral"}}};
  const auto& [architecture, model_type] = kNames.at(arch);
  nlohmann::json c = {
      {"architectures", {architecture}},
      {"model_type", model_type},
      {"hidden_size", s.hidden},
      {"intermediate_size", s.intermediate},
      {"num_hidden_layers", s.layers},
      {"num_attention_heads", s.heads},
      {"num_key_value_heads", s.kv_heads},
      {"vocab_size", s.vocab},
      {"max_position_embeddings", s.max_positions},
      {"rms_norm_eps", s.rms_norm_eps},
      {"rope_theta", s.rope_theta},
      {"hidden_act", "silu"},
      {"tie_word_embeddings", s.tie_embeddings},
      {"torch_dtype", dtype},
      {"attention_dropout", 0.0},
      {"initializer_range", 0.02},
      {"use_cache", true},
  };
  if (arch == "llama") {
    c["attention_bias"] = false;
    c["mlp_bias"] = false;
  }
  if (arch == "mistral" || arch == "mixtral") c["sliding_window"] = nullptr;
  if (arch == "qwen2") {
    c["use_sliding_window"] = false;
    c["sliding_window"] = s.max_positions;
    c["max_window_layers"] = s.layers;
  }
  if (arch == "mixtral") {
    c["num_local_experts"] = s.experts;
    c["num_experts_per_tok"] = s.experts_per_token;
    c["router_aux_loss_coef"] = 0.0;
    c["output_router_logits"] = false;
  }
  if (bos_id >= 0) c["bos_token_id"] = bos_id;
  if (eos_id >= 0) c["eos_token_id"] = eos_id;
  return c;
}

}  // namespace tern::tools
