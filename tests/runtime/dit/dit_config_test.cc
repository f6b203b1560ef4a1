// DiT config.json parsing: the demo model, a DiT-XL/2-shaped config in the
// original DiT's spelling, and one precise error per malformed field.
#include "runtime/dit/dit_config.h"

#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/runtime/dit/dit_golden.h"

namespace tern::runtime {
namespace {

using nlohmann::json;

json DemoConfig() {
  return json::parse(test_data::ReadTestFile(dit_test::kDemoDitDir + "/config.json"));
}

TEST(DitConfigTest, ParsesTheDemoModel) {
  auto c = LoadDitConfig(dit_test::kDemoDitDir);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->image_size, 32);
  EXPECT_EQ(c->in_channels, 1);
  EXPECT_EQ(c->patch_size, 2);
  EXPECT_EQ(c->hidden_size, 128);
  EXPECT_EQ(c->depth, 8);
  EXPECT_EQ(c->num_heads, 4);
  EXPECT_EQ(c->head_dim(), 32);
  EXPECT_EQ(c->mlp_hidden(), 512);
  EXPECT_EQ(c->num_classes, 10);
  EXPECT_EQ(c->null_class, 10);
  EXPECT_FALSE(c->learn_sigma);
  EXPECT_EQ(c->out_channels(), 1);
  EXPECT_EQ(c->num_tokens(), 256);
  EXPECT_EQ(c->frequency_embedding_size, 256);
  EXPECT_DOUBLE_EQ(c->layernorm_eps, 1e-6);
  EXPECT_EQ(c->noise_schedule.beta_schedule, "linear");
  EXPECT_DOUBLE_EQ(c->noise_schedule.beta_start, 1e-4);
  EXPECT_DOUBLE_EQ(c->noise_schedule.beta_end, 0.02);
  EXPECT_EQ(c->noise_schedule.num_train_timesteps, 1000);
  EXPECT_TRUE(c->pixel_space);
  EXPECT_EQ(c->pixel_min, -1.0);
  EXPECT_EQ(c->pixel_max, 1.0);
}

TEST(DitConfigTest, ParsesDitXl2InTheOriginalSpelling) {
  // DiT-XL/2 at 512 px: latents 4 x 64 x 64, the original constructor's names.
  const char* text = R"({"input_size": 64, "patch_size": 2, "in_channels": 4, "hidden_size": 1152,
      "depth": 28, "num_heads": 16, "mlp_ratio": 4.0, "class_dropout_prob": 0.1, "num_classes": 1000,
      "learn_sigma": true})";
  auto c = ParseDitConfig(text);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->image_size, 64);
  EXPECT_EQ(c->num_tokens(), 1024);
  EXPECT_EQ(c->head_dim(), 72);
  EXPECT_EQ(c->mlp_hidden(), 4608);
  EXPECT_EQ(c->out_channels(), 8);
  EXPECT_EQ(c->patch_features(), 16);
  EXPECT_EQ(c->null_class, 1000);
  EXPECT_FALSE(c->pixel_space);  // latents: a VAE decodes them
  EXPECT_EQ(c->noise_schedule.num_train_timesteps, 1000);  // DDPM's linear schedule by default

  auto no_dropout = ParseDitConfig(R"({"input_size": 32, "patch_size": 2, "in_channels": 4, "hidden_size": 1152,
      "depth": 28, "num_heads": 16, "class_dropout_prob": 0, "num_classes": 1000})");
  ASSERT_TRUE(no_dropout.ok()) << no_dropout.status();
  EXPECT_FALSE(no_dropout->has_null_class());
}

struct BadField {
  const char* field;    // set (or removed, when value is null) in the demo config
  const char* value;    // JSON text, or nullptr to remove the field
  const char* message;  // expected in the error
};

class DitConfigErrorTest : public ::testing::TestWithParam<BadField> {};

TEST_P(DitConfigErrorTest, NamesTheField) {
  const BadField& bad = GetParam();
  json doc = DemoConfig();
  const std::string field = bad.field;
  json* target = &doc;
  std::string key = field;
  if (const size_t dot = field.find('.'); dot != std::string::npos) {
    target = &doc[field.substr(0, dot)];
    key = field.substr(dot + 1);
  }
  if (bad.value == nullptr) {
    target->erase(key);
  } else {
    (*target)[key] = json::parse(bad.value);
  }
  auto c = ParseDitConfig(doc.dump());
  ASSERT_FALSE(c.ok()) << field;
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find(bad.message), std::string::npos) << c.status();
}

INSTANTIATE_TEST_SUITE_P(
    Fields, DitConfigErrorTest,
    ::testing::Values(BadField{"hidden_size", nullptr, "hidden_size: is missing"},
                      BadField{"image_size", nullptr, "image_size: is missing"},
                      BadField{"input_size", "64", "input_size: 64 differs from image_size 32"},
                      BadField{"depth", "0", "depth: 0 is not >= 1"},
                      BadField{"num_heads", "3", "num_heads: 3 does not divide hidden_size 128"},
                      BadField{"patch_size", "3", "patch_size: 3 does not divide image_size 32"},
                      BadField{"in_channels", "1.5", "in_channels: is not an integer"},
                      BadField{"mlp_ratio", "0.3", "mlp_ratio: 0.3 times hidden_size 128"},
                      BadField{"null_class", "3", "null_class: 3 is not num_classes (10)"},
                      BadField{"learn_sigma", "\"no\"", "learn_sigma: is not true or false"},
                      BadField{"frequency_embedding_size", "255", "frequency_embedding_size: 255 is not even"},
                      BadField{"layernorm_eps", "0", "layernorm_eps: is not > 0"},
                      BadField{"mlp_activation", "\"relu\"", "mlp_activation: \"relu\" is not supported"},
                      BadField{"prediction_type", "\"v_prediction\"", "prediction_type: \"v_prediction\""},
                      BadField{"architecture", "\"UNet\"", "architecture: \"UNet\" is not supported"},
                      BadField{"noise_schedule.beta_schedule", "\"cosine\"",
                               "noise_schedule.beta_schedule: \"cosine\" is not supported"},
                      BadField{"noise_schedule.beta_end", "1.5", "noise_schedule.beta_end: 1.5 is not in"},
                      BadField{"noise_schedule.beta_start", "0", "noise_schedule.beta_start: 0 is not in (0, 1)"},
                      BadField{"noise_schedule.num_train_timesteps", "1",
                               "noise_schedule.num_train_timesteps: 1 is not >= 2"},
                      BadField{"input.pixel_range", "[1, -1]", "input.pixel_range: [1, -1] is not lo < hi"},
                      BadField{"class_dropout_prob", "1", "class_dropout_prob: 1 is not in [0, 1)"}),
    [](const ::testing::TestParamInfo<BadField>& info) {
      std::string name = info.param.field;
      for (char& ch : name) {
        if (ch == '.') ch = '_';
      }
      return name + (info.param.value == nullptr ? "_missing" : "_bad");
    });

TEST(DitConfigTest, RejectsMalformedDocuments) {
  EXPECT_EQ(ParseDitConfig("{").status().message(), "config.json: not valid JSON");
  EXPECT_EQ(ParseDitConfig("[1]").status().message(), "config.json: not a JSON object");
  EXPECT_EQ(LoadDitConfig("/nonexistent").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tern::runtime
