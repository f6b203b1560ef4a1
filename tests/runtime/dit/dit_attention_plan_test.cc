// DiTFastAttn plan files: tern's form and the reference implementation's
// per-block lists, and every named error a plan that does not fit the model
// gets.
#include "runtime/dit/dit_attention_plan.h"

#include <string>

#include "gtest/gtest.h"
#include "runtime/dit/dit_config.h"

namespace tern::runtime {
namespace {

// The demo DiT's shape: 8 blocks, 16 x 16 = 256 tokens an image.
DitConfig DemoConfig() {
  DitConfig c;
  c.depth = 8;
  c.image_size = 32;
  c.patch_size = 2;
  c.hidden_size = 128;
  c.num_heads = 4;
  c.num_classes = 10;
  c.null_class = 10;
  return c;
}

std::string Row(const std::string& method, int layers = 8) {
  std::string row = "[";
  for (int l = 0; l < layers; ++l) row += (l ? ", \"" : "\"") + method + "\"";
  return row + "]";
}

std::string TernPlan(const std::string& extra = "", int window = 16) {
  return "{\"format\": \"tern-dit-attention-plan\", \"version\": 1, \"steps\": 4, \"layers\": 8, \"window\": " +
         std::to_string(window) + extra + ", \"methods\": [" + Row("full") + ", " + Row("window") + ", " +
         Row("reuse") + ", " + Row("full+cfg") + "]}";
}

absl::Status ErrorOf(const std::string& text) {
  return ParseDitAttentionPlan(text, "plan.json", DemoConfig()).status();
}

TEST(DitAttentionPlanTest, ParsesTernForm) {
  auto plan = ParseDitAttentionPlan(TernPlan(", \"metadata\": {\"threshold\": 0.05}"), "plan.json", DemoConfig());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->num_steps, 4);
  EXPECT_EQ(plan->num_layers, 8);
  EXPECT_EQ(plan->window, 16);
  EXPECT_EQ(plan->method(0, 3), DitAttentionMethod::kFull);
  EXPECT_EQ(plan->method(1, 7), DitAttentionMethod::kWindow);
  EXPECT_EQ(plan->method(2, 0), DitAttentionMethod::kReuse);
  EXPECT_EQ(plan->method(3, 5), DitAttentionMethod::kFullShareCfg);
  EXPECT_EQ(plan->metadata_json, "{\"threshold\":0.05}");
  // Step 0 keeps the residual step 1's window reads; step 1 the output step 2 reuses.
  EXPECT_TRUE(plan->StoresResidual(0, 2));
  EXPECT_FALSE(plan->StoresResidual(3, 2));
  EXPECT_FALSE(plan->StoresOutput(0, 2));
  EXPECT_TRUE(plan->StoresOutput(1, 2));
  EXPECT_TRUE(plan->LayerUsesResidual(4));
  EXPECT_TRUE(plan->LayerUsesOutput(4));
  EXPECT_DOUBLE_EQ(plan->Share(DitAttentionMethod::kReuse), 0.25);
  EXPECT_EQ(plan->Describe(), "ditfastattn (4 steps, window 16: full 50%, window 25%, reuse 25%, +cfg 25%)");
  EXPECT_LT(plan->AttentionFraction(256), 0.75);

  // Written and read back: the same plan.
  auto again = ParseDitAttentionPlan(DitAttentionPlanToJson(*plan), "again.json", DemoConfig());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->methods, plan->methods);
  EXPECT_EQ(again->window, plan->window);
  EXPECT_EQ(again->metadata_json, plan->metadata_json);
}

// The demo DiT's plan over a DiT-XL/2-shaped model: 28 blocks, 1,024 tokens.
TEST(DitAttentionPlanTest, StretchesOverADeeperModelOfMoreTokens) {
  auto plan = ParseDitAttentionPlan(TernPlan(), "plan.json", DemoConfig());
  ASSERT_TRUE(plan.ok()) << plan.status();
  DitConfig xl = DemoConfig();
  xl.depth = 28;
  xl.image_size = 64;  // 32 x 32 patches
  auto stretched = StretchDitAttentionPlan(*plan, 256, xl);
  ASSERT_TRUE(stretched.ok()) << stretched.status();
  EXPECT_EQ(stretched->num_steps, 4);
  EXPECT_EQ(stretched->num_layers, 28);
  EXPECT_EQ(stretched->window, 64);  // 16 of 256 tokens, kept as a share of 1,024
  for (int32_t s = 0; s < 4; ++s) {
    for (int32_t l = 0; l < 28; ++l) {
      EXPECT_EQ(stretched->method(s, l), plan->method(s, l * 8 / 28)) << "step " << s << ", layer " << l;
    }
  }
  EXPECT_EQ(stretched->source, "plan.json (stretched)");
  EXPECT_NE(stretched->metadata_json.find("plan.json"), std::string::npos);
  EXPECT_EQ(StretchDitAttentionPlan(*plan, 0, xl).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DitAttentionPlanTest, ParsesTheReferenceForm) {
  std::string text = "[";
  for (int l = 0; l < 8; ++l) {
    text += std::string(l ? ", " : "") +
            "{\"attn1\": [\"full_attn\", \"residual_window_attn+cfg_attn_share\", \"output_share\", "
            "\"full_attn+cfg_attn_share\", \"residual_window_attn\"], \"attn2\": null, \"ff\": null}";
  }
  text += "]";
  auto plan = ParseDitAttentionPlan(text, "reference.json", DemoConfig());
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->num_steps, 5);
  EXPECT_EQ(plan->window, 64);  // the reference's default
  EXPECT_EQ(plan->method(1, 0), DitAttentionMethod::kWindowShareCfg);
  EXPECT_EQ(plan->method(2, 7), DitAttentionMethod::kReuse);
  EXPECT_EQ(plan->method(4, 7), DitAttentionMethod::kWindow);
  EXPECT_TRUE(plan->StoresResidual(3, 0));  // full+cfg at step 3, window at 4

  EXPECT_EQ(ErrorOf("[{\"attn1\": [\"full_attn\"], \"attn2\": null, \"ff\": [\"output_share\"]}]").message(),
            "plan.json: [0].ff: sharing the MLP output is not supported (only self-attention plans)");
  EXPECT_EQ(ErrorOf("[{\"attn1\": [\"full_attn\"]}, {\"attn1\": [\"full_attn\", \"output_share\"]}]").message(),
            "plan.json: [1].attn1: 2 steps, but block 0 has 1");
}

TEST(DitAttentionPlanTest, NamesWhatDoesNotFitTheModel) {
  EXPECT_EQ(ErrorOf("{").message(), "plan.json: not valid JSON");
  EXPECT_EQ(ErrorOf("3").message(),
            "plan.json: neither a tern plan (an object) nor the reference's per-block list (an array)");
  const absl::Status layers = ErrorOf(
      "{\"steps\": 1, \"layers\": 6, \"window\": 8, \"methods\": [" + Row("full", 6) + "]}");
  EXPECT_EQ(layers.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(layers.message(), "plan.json: layers: 6, but the model has 8 blocks");
  EXPECT_EQ(ErrorOf("{\"steps\": 2, \"layers\": 8, \"window\": 8, \"methods\": [" + Row("full") + "]}").message(),
            "plan.json: methods: 1 steps, but steps is 2");
  EXPECT_EQ(ErrorOf("{\"steps\": 1, \"layers\": 8, \"window\": 8, \"methods\": [" + Row("full", 7) + "]}").message(),
            "plan.json: methods[0]: 7 layers, but layers is 8");
  EXPECT_EQ(ErrorOf("{\"steps\": 1001, \"layers\": 8, \"window\": 8, \"methods\": []}").message(),
            "plan.json: methods: 0 steps, but steps is 1001");
  DitConfig few_timesteps = DemoConfig();
  few_timesteps.noise_schedule.num_train_timesteps = 3;
  EXPECT_EQ(ParseDitAttentionPlan(TernPlan(), "plan.json", few_timesteps).status().message(),
            "plan.json: steps: 4 is not in [1, 3]");
  EXPECT_EQ(ErrorOf("{\"steps\": 0, \"layers\": 8, \"window\": 8, \"methods\": []}").message(),
            "plan.json: steps: 0 is not >= 1");
  EXPECT_EQ(ErrorOf(TernPlan("", 0)).message(),
            "plan.json: window: 0 is not in [1, 256] (keys on each side of a query; the model has 256 tokens an "
            "image)");
  EXPECT_EQ(ErrorOf(TernPlan("", 257)).message(),
            "plan.json: window: 257 is not in [1, 256] (keys on each side of a query; the model has 256 tokens an "
            "image)");
  EXPECT_TRUE(ParseDitAttentionPlan(TernPlan("", 256), "plan.json", DemoConfig()).ok());
  EXPECT_EQ(ErrorOf("{\"steps\": 1, \"layers\": 8, \"window\": 8, \"methods\": [[\"full\", \"fast\", \"full\", "
                    "\"full\", \"full\", \"full\", \"full\", \"full\"]]}")
                .message()
                .rfind("plan.json: methods[0][1]: unknown method \"fast\" (full, full+cfg, ", 0),
            0u);
  EXPECT_EQ(ErrorOf("{\"steps\": 2, \"layers\": 8, \"window\": 8, \"methods\": [" + Row("reuse") + ", " +
                    Row("full") + "]}")
                .message(),
            "plan.json: methods[0][0]: \"reuse\" needs an earlier step of layer 0 that computes attention");
  EXPECT_EQ(ErrorOf("{\"steps\": 2, \"layers\": 8, \"window\": 8, \"methods\": [" + Row("window+cfg") + ", " +
                    Row("full") + "]}")
                .message(),
            "plan.json: methods[0][0]: \"window+cfg\" needs an earlier full step of layer 0 (the residual it adds)");
  EXPECT_EQ(ErrorOf(TernPlan(", \"threshold\": 1")).message(),
            "plan.json: threshold: unknown field (a plan has format, version, steps, layers, window, methods and "
            "metadata)");
  EXPECT_EQ(ErrorOf("{\"format\": \"x\", \"steps\": 1}").message(),
            "plan.json: format: \"x\" is not \"tern-dit-attention-plan\"");
  EXPECT_EQ(ErrorOf("{\"steps\": 1, \"layers\": 8, \"methods\": []}").message(), "plan.json: window: missing");
  EXPECT_EQ(ErrorOf("{\"steps\": 1.5, \"layers\": 8, \"window\": 8, \"methods\": []}").message(),
            "plan.json: steps: 1.5 is not an integer");

  const absl::Status missing = LoadDitAttentionPlan("/nonexistent/plan.json", DemoConfig()).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.message(), "/nonexistent/plan.json: cannot read the attention plan");
}

}  // namespace
}  // namespace tern::runtime
