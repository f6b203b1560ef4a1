#include "runtime/model/hf_config.h"

#include "gtest/gtest.h"
#include "runtime/model/rope_frequencies.h"

namespace tern::runtime {
namespace {

constexpr char kLlama3[] = R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256,
  "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
  "num_attention_heads": 32, "num_key_value_heads": 8, "max_position_embeddings": 131072,
  "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "torch_dtype": "bfloat16",
  "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "tie_word_embeddings": false,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"}})";

TEST(HfConfigTest, ParsesLlama31WithRopeScalingAndGqa) {
  auto c = ParseHfConfig(kLlama3);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->num_key_value_heads, 8);
  EXPECT_EQ(c->eos_token_id, 128001);
  ASSERT_TRUE(c->rope_scaling.has_value());
  EXPECT_EQ(c->rope_scaling->type, "llama3");
  EXPECT_EQ(c->torch_dtype, "bfloat16");
}

TEST(HfConfigTest, Llama3FrequenciesFollowTheWavelengthBands) {
  auto c = ParseHfConfig(kLlama3);
  ASSERT_TRUE(c.ok());
  auto scaled = RopeInverseFrequencies(*c);
  ASSERT_TRUE(scaled.ok());
  HfConfig plain = *c;
  plain.rope_scaling.reset();
  auto base = RopeInverseFrequencies(plain);
  ASSERT_TRUE(base.ok());
  ASSERT_EQ(scaled->size(), 64u);
  // Highest frequencies (short wavelengths) are untouched; the lowest are divided by the factor;
  // those between are blended, monotonically.
  EXPECT_FLOAT_EQ((*scaled)[0], (*base)[0]);
  EXPECT_FLOAT_EQ((*scaled)[63], (*base)[63] / 8.0f);
  for (size_t i = 0; i < 64; ++i) {
    EXPECT_LE((*scaled)[i], (*base)[i] * 1.000001f);
    EXPECT_GE((*scaled)[i], (*base)[i] / 8.0f * 0.999999f);
  }
  EXPECT_NEAR((*base)[1], 1.0f / std::pow(500000.0f, 2.0f / 128.0f), 1e-9);
}

TEST(HfConfigTest, QwenHasBiasAndMixtralNeedsExperts) {
  auto qwen = ParseHfConfig(R"({"architectures": ["Qwen2ForCausalLM"], "vocab_size": 10, "hidden_size": 8,
    "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 32})");
  ASSERT_TRUE(qwen.ok()) << qwen.status();
  EXPECT_TRUE(qwen->attention_bias);
  auto mixtral = ParseHfConfig(R"({"architectures": ["MixtralForCausalLM"], "vocab_size": 10, "hidden_size": 8,
    "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 32})");
  EXPECT_EQ(mixtral.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(mixtral.status().message().find("num_local_experts"), std::string::npos);
}

TEST(HfConfigTest, RejectsMalformedConfigsNamingTheField) {
  const std::string base = R"("vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
      "num_hidden_layers": 1, "max_position_embeddings": 32)";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{", "JSON"},
      {R"({"architectures": ["BertModel"], )" + base + R"(, "num_attention_heads": 2})", "BertModel"},
      {R"({"architectures": [], )" + base + R"(, "num_attention_heads": 2})", "architectures"},
      {R"({"architectures": ["LlamaForCausalLM"], )" + base + "}", "num_attention_heads"},
      {R"({"architectures": ["LlamaForCausalLM"], )" + base + R"(, "num_attention_heads": 3})", "hidden_size"},
      {R"({"architectures": ["LlamaForCausalLM"], )" + base + R"(, "num_attention_heads": 2, "num_key_value_heads": 3})",
       "num_key_value_heads"},
      {R"({"architectures": ["LlamaForCausalLM"], )" + base + R"(, "num_attention_heads": 2, "torch_dtype": "int4"})",
       "torch_dtype"},
      {R"({"architectures": ["LlamaForCausalLM"], )" + base + R"(, "num_attention_heads": 2, "vocab_size": -4})",
       "vocab_size"},
      {R"({"architectures": ["LlamaForCausalLM"], )" + base +
           R"(, "num_attention_heads": 2, "rope_scaling": {"rope_type": "yarn", "factor": 4}})",
       "rope_scaling"},
  };
  for (const auto& [json, field] : cases) {
    auto c = ParseHfConfig(json);
    EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument) << json;
    EXPECT_NE(c.status().message().find(field), std::string::npos) << c.status();
  }
  EXPECT_EQ(LoadHfConfig("/nonexistent").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tern::runtime
