#include "runtime/model/hf_config.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace tern::runtime {
namespace {

using nlohmann::json;

absl::Status Invalid(const std::string& field, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: ", field, ": ", why));
}

// Reads an integer field; `required` fields must exist and be > 0.
absl::StatusOr<int64_t> GetInt(const json& doc, const char* field, bool required, int64_t fallback) {
  const auto it = doc.find(field);
  if (it == doc.end() || it->is_null()) {
    if (required) return Invalid(field, "is missing");
    return fallback;
  }
  if (!it->is_number_integer()) return Invalid(field, "is not an integer");
  const int64_t value = it->get<int64_t>();
  if (required && value <= 0) return Invalid(field, absl::StrCat(value, " is not > 0"));
  return value;
}

absl::StatusOr<double> GetDouble(const json& doc, const char* field, double fallback) {
  const auto it = doc.find(field);
  if (it == doc.end() || it->is_null()) return fallback;
  if (!it->is_number()) return Invalid(field, "is not a number");
  return it->get<double>();
}

// eos_token_id may be an int or a list (Llama-3 lists several); keep the first.
int64_t FirstTokenId(const json& doc, const char* field) {
  const auto it = doc.find(field);
  if (it == doc.end()) return -1;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_array() && !it->empty() && (*it)[0].is_number_integer()) return (*it)[0].get<int64_t>();
  return -1;
}

#define TERN_ASSIGN_FIELD(target, expr) \
  do {                                  \
    auto value_ = (expr);               \
    if (!value_.ok()) return value_.status(); \
    target = *value_;                   \
  } while (0)

}  // namespace

bool IsSupportedArchitecture(const std::string& architecture) {
  return architecture == "LlamaForCausalLM" || architecture == "MistralForCausalLM" ||
         architecture == "Qwen2ForCausalLM" || architecture == "MixtralForCausalLM";
}

absl::StatusOr<HfConfig> ParseHfConfig(const std::string& json_text) {
  json doc = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return absl::InvalidArgumentError("config.json: not valid JSON");
  if (!doc.is_object()) return absl::InvalidArgumentError("config.json: not a JSON object");

  HfConfig c;
  const auto arch = doc.find("architectures");
  if (arch == doc.end() || !arch->is_array() || arch->empty() || !(*arch)[0].is_string()) {
    return Invalid("architectures", "must be a non-empty list of names");
  }
  c.architecture = (*arch)[0].get<std::string>();
  if (!IsSupportedArchitecture(c.architecture)) {
    return Invalid("architectures",
                   absl::StrCat("\"", c.architecture,
                                "\" is not supported (LlamaForCausalLM, MistralForCausalLM, "
                                "Qwen2ForCausalLM, MixtralForCausalLM)"));
  }
  if (doc.contains("model_type") && doc["model_type"].is_string()) {
    c.model_type = doc["model_type"].get<std::string>();
  }
  TERN_ASSIGN_FIELD(c.vocab_size, GetInt(doc, "vocab_size", true, 0));
  TERN_ASSIGN_FIELD(c.hidden_size, GetInt(doc, "hidden_size", true, 0));
  TERN_ASSIGN_FIELD(c.intermediate_size, GetInt(doc, "intermediate_size", true, 0));
  TERN_ASSIGN_FIELD(c.num_hidden_layers, GetInt(doc, "num_hidden_layers", true, 0));
  TERN_ASSIGN_FIELD(c.num_attention_heads, GetInt(doc, "num_attention_heads", true, 0));
  TERN_ASSIGN_FIELD(c.num_key_value_heads,
                    GetInt(doc, "num_key_value_heads", false, c.num_attention_heads));
  TERN_ASSIGN_FIELD(c.head_dim, GetInt(doc, "head_dim", false, 0));
  TERN_ASSIGN_FIELD(c.max_position_embeddings, GetInt(doc, "max_position_embeddings", true, 0));
  TERN_ASSIGN_FIELD(c.rms_norm_eps, GetDouble(doc, "rms_norm_eps", 1e-6));
  TERN_ASSIGN_FIELD(c.rope_theta, GetDouble(doc, "rope_theta", 10000.0));
  TERN_ASSIGN_FIELD(c.sliding_window, GetInt(doc, "sliding_window", false, 0));
  TERN_ASSIGN_FIELD(c.num_local_experts, GetInt(doc, "num_local_experts", false, 0));
  TERN_ASSIGN_FIELD(c.num_experts_per_tok, GetInt(doc, "num_experts_per_tok", false, 0));

  if (c.num_key_value_heads <= 0 || c.num_attention_heads % c.num_key_value_heads != 0) {
    return Invalid("num_key_value_heads",
                   absl::StrCat(c.num_key_value_heads, " does not divide num_attention_heads ",
                                c.num_attention_heads));
  }
  if (c.head_dim == 0) {
    if (c.hidden_size % c.num_attention_heads != 0) {
      return Invalid("hidden_size", absl::StrCat(c.hidden_size, " is not a multiple of num_attention_heads ",
                                                 c.num_attention_heads));
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (c.head_dim <= 0 || c.head_dim % 2 != 0) {
    return Invalid("head_dim", absl::StrCat(c.head_dim, " must be positive and even (RoPE pairs)"));
  }
  if (!(c.rms_norm_eps > 0.0)) return Invalid("rms_norm_eps", "is not > 0");
  if (!(c.rope_theta > 0.0)) return Invalid("rope_theta", "is not > 0");
  if (c.architecture == "MixtralForCausalLM") {
    if (c.num_local_experts <= 0) return Invalid("num_local_experts", "is required for Mixtral");
    if (c.num_experts_per_tok <= 0 || c.num_experts_per_tok > c.num_local_experts) {
      return Invalid("num_experts_per_tok",
                     absl::StrCat(c.num_experts_per_tok, " is not in [1, num_local_experts]"));
    }
  } else {
    c.num_local_experts = 0;
    c.num_experts_per_tok = 0;
  }

  if (doc.contains("tie_word_embeddings") && doc["tie_word_embeddings"].is_boolean()) {
    c.tie_word_embeddings = doc["tie_word_embeddings"].get<bool>();
  }
  c.attention_bias = c.architecture == "Qwen2ForCausalLM";
  if (doc.contains("attention_bias") && doc["attention_bias"].is_boolean()) {
    c.attention_bias = doc["attention_bias"].get<bool>();
  }
  c.torch_dtype = doc.value("torch_dtype", std::string("float32"));
  if (doc.contains("dtype") && doc["dtype"].is_string()) c.torch_dtype = doc["dtype"].get<std::string>();
  if (c.torch_dtype != "float32" && c.torch_dtype != "float16" && c.torch_dtype != "bfloat16") {
    return Invalid("torch_dtype", absl::StrCat("\"", c.torch_dtype, "\" is not float32, float16 or bfloat16"));
  }
  c.bos_token_id = FirstTokenId(doc, "bos_token_id");
  c.eos_token_id = FirstTokenId(doc, "eos_token_id");

  const auto scaling = doc.find("rope_scaling");
  if (scaling != doc.end() && scaling->is_object()) {
    RopeScaling rs;
    rs.type = scaling->value("rope_type", scaling->value("type", std::string()));
    TERN_ASSIGN_FIELD(rs.factor, GetDouble(*scaling, "factor", 1.0));
    TERN_ASSIGN_FIELD(rs.low_freq_factor, GetDouble(*scaling, "low_freq_factor", 1.0));
    TERN_ASSIGN_FIELD(rs.high_freq_factor, GetDouble(*scaling, "high_freq_factor", 4.0));
    TERN_ASSIGN_FIELD(rs.original_max_position_embeddings,
                      GetInt(*scaling, "original_max_position_embeddings", false, 0));
    if (rs.type != "linear" && rs.type != "llama3" && rs.type != "dynamic" && rs.type != "default") {
      return Invalid("rope_scaling.rope_type", absl::StrCat("\"", rs.type, "\" is not supported"));
    }
    if (!(rs.factor > 0.0)) return Invalid("rope_scaling.factor", "is not > 0");
    if (rs.type != "default") c.rope_scaling = rs;
  }
  return c;
}

absl::StatusOr<HfConfig> LoadHfConfig(const std::string& model_dir) {
  const auto path = std::filesystem::path(model_dir) / "config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path.string(), " cannot be opened"));
  std::ostringstream text;
  text << in.rdbuf();
  auto config = ParseHfConfig(text.str());
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat(model_dir, ": ", config.status().message()));
  }
  return config;
}

}  // namespace tern::runtime
