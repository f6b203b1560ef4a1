// weight_scheme spellings, parsed once into a typed value, and the
// mixed-precision plan file.
#include "runtime/model/weight_scheme.h"

#include <string>

#include "gtest/gtest.h"

namespace tern::runtime {
namespace {

TEST(WeightSchemeTest, ParsesEverySpelling) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "auto"},
      {"auto", "auto"},
      {"w8a16", "w8a16"},
      {"w8a16-g128", "w8a16-g128"},
      {"w8a16-channel", "w8a16"},
      {"w4a16", "w4a16-g128"},
      {"w4a16-g32", "w4a16-g32"},
      {"w4a16-g64-asym", "w4a16-g64-asym"},
      {"w4a16-asym-g256", "w4a16-g256-asym"},
      {"w4a16-channel", "w4a16"},
      {"fp8", "w8a8-fp8"},
      {"w8a8-fp8", "w8a8-fp8"},
      {"int8", "w8a8-int8"},
      {"w8a8-int8", "w8a8-int8"},
      {"mixed:plans/a.json", "mixed:plans/a.json"},
  };
  for (const auto& [text, canonical] : cases) {
    auto request = ParseWeightSchemeRequest(text);
    ASSERT_TRUE(request.ok()) << text << ": " << request.status();
    EXPECT_EQ(request->ToString(), canonical) << text;
  }
  auto w4 = ParseWeightSchemeRequest("w4a16-g64-asym");
  EXPECT_EQ(w4->kind, WeightSchemeRequest::Kind::kUniform);
  EXPECT_EQ(w4->uniform.scheme, WeightScheme::kW4A16);
  EXPECT_EQ(w4->uniform.group_size, 64);
  EXPECT_FALSE(w4->uniform.symmetric);
}

TEST(WeightSchemeTest, RejectsAnythingElseNamingTheValue) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"w8a8", "\"w8a8\" is not a weight scheme (ambiguous: say w8a8-fp8 or w8a8-int8)"},
      {"w4a16-g100", "\"w4a16-g100\" is not a weight scheme (group size \"100\" is not 32, 64, 128 or 256)"},
      {"w4a16-g32-g64", "\"w4a16-g32-g64\" is not a weight scheme (unexpected \"-g64\")"},
      {"W4A16", "\"W4A16\" is not a weight scheme"},
      {"gptq", "\"gptq\" is not a weight scheme"},
      {"mixed:", "\"mixed:\" is not a weight scheme (mixed: needs the path of a plan file)"},
      {"dense", "\"dense\" is not a weight scheme (say auto to keep the checkpoint as stored)"},
      {"fp8-asym", "\"fp8-asym\" is not a weight scheme"},
  };
  for (const auto& [text, prefix] : cases) {
    auto request = ParseWeightSchemeRequest(text);
    ASSERT_FALSE(request.ok()) << text;
    EXPECT_EQ(request.status().code(), absl::StatusCode::kInvalidArgument);
    const std::string message(request.status().message());
    EXPECT_EQ(message.substr(0, prefix.size()), prefix) << message;
    EXPECT_NE(message.find("; use one of: auto, w8a16"), std::string::npos) << message;
  }
}

TEST(WeightSchemeTest, ParsesMixedPrecisionPlans) {
  auto plan = ParseMixedPrecisionPlan(
      R"({"default": "w8a16", "layers": {"model.layers.0.mlp.down_proj": "w4a16-g32", "lm_head": "dense"}})", "p.json");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->default_scheme.ToString(), "w8a16");
  EXPECT_EQ(plan->layers.at("model.layers.0.mlp.down_proj").ToString(), "w4a16-g32");
  EXPECT_EQ(plan->layers.at("lm_head").scheme, WeightScheme::kDense);

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"[]", "mixed-precision plan p.json: not a JSON object"},
      {R"({"default": 8})", "mixed-precision plan p.json: \"default\" is not a string"},
      {R"({"layers": {"x": "w2a16"}})", "mixed-precision plan p.json: layers.x: \"w2a16\" is not a weight scheme"},
      {R"({"budget": 5})", "mixed-precision plan p.json: unknown key \"budget\" (expected \"default\" and \"layers\")"},
  };
  for (const auto& [text, prefix] : bad) {
    auto parsed = ParseMixedPrecisionPlan(text, "p.json");
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_EQ(std::string(parsed.status().message()).substr(0, prefix.size()), prefix) << parsed.status();
  }
  EXPECT_EQ(LoadMixedPrecisionPlan("/nonexistent/plan.json").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace tern::runtime
