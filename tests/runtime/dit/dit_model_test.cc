// The DiT forward pass on CpuDitOps against PyTorch (golden.json's
// "forward": float64 from the same float16 weights), and the properties the
// serving engine relies on: a sample's output does not depend on its batch
// mates, the original DiT's tensor names load the same network, and a
// learn_sigma model's noise channels come out where they should.
#include "runtime/dit/dit_model.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/dit/cpu_dit_ops.h"
#include "runtime/dit/dit_linear_plan.h"
#include "runtime/dit/dit_weights.h"
#include "runtime/dit/gaussian_noise.h"
#include "tests/runtime/dit/dit_golden.h"

namespace tern::runtime {
namespace {

constexpr int64_t kPixels = 1024;  // 1 x 32 x 32

class DitModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = DitModel::Load(dit_test::kDemoDitDir, &ops_);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
  }

  std::vector<float> Forward(DitModel& model, const std::vector<float>& x, const std::vector<float>& t,
                             const std::vector<int32_t>& y) {
    std::vector<float> eps(x.size());
    const absl::Status status = model.Forward({x, t, y, {}}, absl::MakeSpan(eps));
    EXPECT_TRUE(status.ok()) << status;
    return eps;
  }

  CpuDitOps ops_;
  std::unique_ptr<DitModel> model_;
};

TEST_F(DitModelTest, ForwardMatchesPyTorch) {
  const auto& golden = dit_test::Golden()["forward"];
  const std::vector<float> x = GaussianNoise(42, 2 * kPixels);
  const auto t = golden["t"].get<std::vector<float>>();
  const auto y = golden["y"].get<std::vector<int32_t>>();
  const auto want = golden["eps"].get<std::vector<double>>();
  ASSERT_EQ(want.size(), size_t(2 * kPixels));
  const std::vector<float> eps = Forward(*model_, x, t, y);
  const auto [max_abs, relative] = dit_test::CompareEps(eps, want);
  std::printf("forward eps vs PyTorch float64: max abs error %.3g, relative (L2) error %.3g, |eps| max %.3g\n",
              max_abs, relative, 4.706);
  // fp32 against float64 through 8 blocks: PyTorch's own float32 run of the
  // same network (TF32 off) lands 3e-6 max abs / 3.7e-7 relative from this
  // golden (models/tern-demo-dit/README.md); golden values carry 7
  // significant digits (<= 2.5e-7 absolute here). 10x margin on that run.
  EXPECT_LT(max_abs, 3e-5);
  EXPECT_LT(relative, 4e-6);
}

TEST_F(DitModelTest, SamplesAreIndependentOfTheirBatch) {
  // Four samples at different timesteps and classes (the null class too), as
  // one batch and one at a time, and the same batch in another order.
  const std::vector<float> noise = GaussianNoise(5, 4 * kPixels);
  const std::vector<float> t = {999.0f, 500.0f, 20.0f, 0.0f};
  const std::vector<int32_t> y = {3, 10, 7, 0};
  const std::vector<float> batched = Forward(*model_, noise, t, y);
  double max_diff = 0.0;
  for (int b = 0; b < 4; ++b) {
    const std::vector<float> x(noise.begin() + b * kPixels, noise.begin() + (b + 1) * kPixels);
    const std::vector<float> alone = Forward(*model_, x, {t[b]}, {y[b]});
    for (int64_t i = 0; i < kPixels; ++i) {
      max_diff = std::max(max_diff, double(std::abs(alone[i] - batched[b * kPixels + i])));
    }
  }
  std::printf("batched vs alone: max abs difference %.3g\n", max_diff);
  EXPECT_LE(max_diff, 1e-6);

  // Reversed order.
  std::vector<float> reversed_x;
  for (int b = 3; b >= 0; --b) reversed_x.insert(reversed_x.end(), noise.begin() + b * kPixels, noise.begin() + (b + 1) * kPixels);
  const std::vector<float> reversed = Forward(*model_, reversed_x, {0.0f, 20.0f, 500.0f, 999.0f}, {0, 7, 10, 3});
  for (int b = 0; b < 4; ++b) {
    for (int64_t i = 0; i < kPixels; ++i) {
      ASSERT_NEAR(reversed[(3 - b) * kPixels + i], batched[b * kPixels + i], 1e-6) << "sample " << b;
    }
  }
}

TEST_F(DitModelTest, RejectsBadInputs) {
  const std::vector<float> x(2 * kPixels, 0.0f);
  std::vector<float> eps(2 * kPixels);
  absl::Status s = model_->Forward({x, std::vector<float>{1.0f, 2.0f}, std::vector<int32_t>{3, 11}, {}},
                                   absl::MakeSpan(eps));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("sample 1 has class 11; expected [0, 10) or the null class 10"), std::string::npos) << s;
  s = model_->Forward({x, std::vector<float>{1.0f}, std::vector<int32_t>{3}, {}}, absl::MakeSpan(eps));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  s = model_->Forward({x, std::vector<float>{1.0f, NAN}, std::vector<int32_t>{3, 4}, {}}, absl::MakeSpan(eps));
  EXPECT_NE(s.message().find("non-finite timestep"), std::string::npos) << s;
  EXPECT_TRUE(model_->Forward({{}, {}, {}, {}}, {}).ok());  // an empty batch
}

TEST_F(DitModelTest, ComputedPositionTableMatchesTheStoredOne) {
  auto store = WeightStore::Open(dit_test::kDemoDitDir);
  ASSERT_TRUE(store.ok());
  auto stored = (*store)->Get("pos_embed");
  ASSERT_TRUE(stored.ok());
  std::vector<float> values(stored->numel());
  ConvertToFloat(stored->dtype, stored->data, values.size(), values.data());
  const std::vector<float> computed = DitPositionTable(128, 16);
  ASSERT_EQ(computed.size(), values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    // Stored rounded to float16: half an ulp of values in [-1, 1].
    ASSERT_NEAR(computed[i], values[i], 4.9e-4) << i;
  }
}

// Writes `tensors` (fp32) as a safetensors file in a fresh directory with
// `config_json`; returns the directory.
std::string WriteModel(const std::string& name, const std::string& config_json,
                       const std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>& tensors) {
  const std::string dir = ::testing::TempDir() + "/" + name;
  std::filesystem::create_directories(dir);
  std::FILE* f = std::fopen((dir + "/config.json").c_str(), "w");
  std::fputs(config_json.c_str(), f);
  std::fclose(f);
  std::vector<TensorSpec> specs;
  for (const auto& [tensor_name, value] : tensors) specs.push_back({tensor_name, DType::kF32, value.first});
  const absl::Status s = WriteSafetensors(dir + "/model.safetensors", specs, [&](const TensorSpec& spec, uint8_t* out) {
    const auto& values = tensors.at(spec.name).second;
    std::memcpy(out, values.data(), values.size() * sizeof(float));
  });
  EXPECT_TRUE(s.ok()) << s;
  return dir;
}

// The demo's tensors as fp32, by name.
std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> DemoTensors() {
  auto store = WeightStore::Open(dit_test::kDemoDitDir);
  EXPECT_TRUE(store.ok());
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> out;
  for (const std::string& name : (*store)->Names()) {
    const TensorView t = *(*store)->Get(name);
    std::vector<float> values(t.numel());
    ConvertToFloat(t.dtype, t.data, values.size(), values.data());
    out[name] = {t.shape, std::move(values)};
  }
  return out;
}

TEST_F(DitModelTest, OriginalDitNamesLoadTheSameNetwork) {
  // Every tensor renamed to the original DiT's state-dict names: the same eps.
  auto config = LoadDitConfig(dit_test::kDemoDitDir);
  ASSERT_TRUE(config.ok());
  const auto tern_layout = DitTensorLayout(*config, DitNaming::kTern);
  const auto original_layout = DitTensorLayout(*config, DitNaming::kOriginal);
  ASSERT_EQ(tern_layout.size(), original_layout.size());
  auto tensors = DemoTensors();
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> renamed;
  for (size_t i = 0; i < tern_layout.size(); ++i) renamed[original_layout[i].name] = tensors.at(tern_layout[i].name);
  EXPECT_EQ(renamed.count("x_embedder.proj.weight"), 1u);
  EXPECT_EQ(renamed.count("t_embedder.mlp.2.bias"), 1u);
  EXPECT_EQ(renamed.count("y_embedder.embedding_table.weight"), 1u);
  EXPECT_EQ(renamed.count("blocks.7.adaLN_modulation.1.weight"), 1u);
  const std::string config_text = test_data::ReadTestFile(dit_test::kDemoDitDir + "/config.json");
  CpuDitOps ops;
  auto original = DitModel::Load(WriteModel("dit_original_names", config_text, renamed), &ops);
  ASSERT_TRUE(original.ok()) << original.status();
  const std::vector<float> x = GaussianNoise(8, 2 * kPixels);
  EXPECT_EQ(Forward(*model_, x, {250.0f, 750.0f}, {1, 10}), Forward(**original, x, {250.0f, 750.0f}, {1, 10}));
}

TEST_F(DitModelTest, ComputesAnAbsentPositionTable) {
  auto tensors = DemoTensors();
  tensors.erase("pos_embed");
  const std::string config_text = test_data::ReadTestFile(dit_test::kDemoDitDir + "/config.json");
  CpuDitOps ops;
  auto computed = DitModel::Load(WriteModel("dit_no_pos_embed", config_text, tensors), &ops);
  ASSERT_TRUE(computed.ok()) << computed.status();
  const std::vector<float> x = GaussianNoise(8, 2 * kPixels);
  const std::vector<float> a = Forward(*model_, x, {250.0f, 750.0f}, {1, 10});
  const std::vector<float> b = Forward(**computed, x, {250.0f, 750.0f}, {1, 10});
  double max_diff = 0.0;
  for (size_t i = 0; i < a.size(); ++i) max_diff = std::max(max_diff, double(std::abs(a[i] - b[i])));
  std::printf("float32 position table vs the stored float16 one: eps max abs difference %.3g\n", max_diff);
  EXPECT_LT(max_diff, 5e-3);  // the table differs by up to 4.9e-4 (float16 rounding)
}

TEST_F(DitModelTest, LearnSigmaKeepsTheNoiseChannels) {
  // A learn_sigma variant of the demo: the final linear gains a variance
  // channel (output order: row in patch, col in patch, channel), filled with
  // arbitrary weights; the noise channel must be the demo's eps.
  auto tensors = DemoTensors();
  auto& [w_shape, w] = tensors.at("final_layer.linear.weight");  // [4, 128]
  auto& [b_shape, bias] = tensors.at("final_layer.linear.bias");
  const std::vector<float> junk = GaussianNoise(77, 4 * 128 + 4);
  std::vector<float> w2, b2;
  for (int k = 0; k < 4; ++k) {
    w2.insert(w2.end(), w.begin() + k * 128, w.begin() + (k + 1) * 128);     // channel 0: eps
    w2.insert(w2.end(), junk.begin() + k * 128, junk.begin() + (k + 1) * 128);  // channel 1: variance
    b2.push_back(bias[k]);
    b2.push_back(junk[4 * 128 + k]);
  }
  w = w2;
  w_shape = {8, 128};
  bias = b2;
  b_shape = {8};
  std::string config_text = test_data::ReadTestFile(dit_test::kDemoDitDir + "/config.json");
  auto doc = nlohmann::json::parse(config_text);
  doc["learn_sigma"] = true;
  const std::string dir = WriteModel("dit_learn_sigma", doc.dump(), tensors);
  CpuDitOps ops;
  auto sigma_model = DitModel::Load(dir, &ops);
  ASSERT_TRUE(sigma_model.ok()) << sigma_model.status();
  EXPECT_EQ((*sigma_model)->config().out_channels(), 2);

  const std::vector<float> x = GaussianNoise(9, kPixels);
  const std::vector<float> a = Forward(*model_, x, {300.0f}, {4});
  const std::vector<float> b = Forward(**sigma_model, x, {300.0f}, {4});
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-6) << i;
}

TEST_F(DitModelTest, StackedModulationsMatchOneProjectionPerBlock) {
  // One GEMM for every adaLN projection (DitWeights::modulations) against
  // one per block: each output column reads the same weights, so only the
  // GEMM's blocking may move the last bits.
  DitModelOptions per_block;
  per_block.stack_modulations = false;
  CpuDitOps ops;
  auto unstacked = DitModel::Load(dit_test::kDemoDitDir, &ops, per_block);
  ASSERT_TRUE(unstacked.ok()) << unstacked.status();
  const std::vector<float> x = GaussianNoise(11, 3 * kPixels);
  const std::vector<float> t = {999.0f, 400.0f, 3.0f};
  const std::vector<int32_t> y = {0, 5, 9};
  const std::vector<float> a = Forward(*model_, x, t, y);
  const std::vector<float> b = Forward(**unstacked, x, t, y);
  double max_abs = 0.0;
  for (size_t i = 0; i < a.size(); ++i) max_abs = std::max(max_abs, std::abs(double(a[i]) - b[i]));
  EXPECT_LT(max_abs, 1e-5);
}

TEST(DitWeightsTest, StacksTheAdaLNProjectionsThatShareAScheme) {
  auto config = LoadDitConfig(dit_test::kDemoDitDir);
  ASSERT_TRUE(config.ok()) << config.status();
  auto store = WeightStore::Open(dit_test::kDemoDitDir);
  ASSERT_TRUE(store.ok()) << store.status();
  CpuDitOps ops;
  const DitNaming naming = DetectDitNaming(*config, **store);
  const auto load = [&](const DitLinearPlan* plan, bool stack) {
    auto w = DitWeights::Load(*config, **store, &ops, plan, stack);
    EXPECT_TRUE(w.ok()) << w.status();
    return w.ok() ? std::move(*w) : DitWeights{};
  };
  // Dense: every block's and the final layer's in one linear.
  DitWeights dense = load(nullptr, true);
  EXPECT_NE(dense.modulations, nullptr);
  EXPECT_EQ(dense.final_adaln, nullptr);
  for (const DitBlockWeights& block : dense.blocks) EXPECT_EQ(block.adaln, nullptr);
  DitWeights apart = load(nullptr, false);
  EXPECT_EQ(apart.modulations, nullptr);
  EXPECT_NE(apart.final_adaln, nullptr);
  for (const DitBlockWeights& block : apart.blocks) EXPECT_NE(block.adaln, nullptr);
  // Uniform INT8 quantizes the blocks' adaLN but not the final layer's:
  // the blocks' stack, the final layer's stays its own.
  auto int8 = DitLinearPlan::Create(*config, naming, *ParseWeightSchemeRequest("int8"));
  ASSERT_TRUE(int8.ok()) << int8.status();
  DitWeights quantized = load(&*int8, true);
  EXPECT_NE(quantized.modulations, nullptr);
  EXPECT_NE(quantized.final_adaln, nullptr);
  // One block's adaLN in another scheme: none stack.
  MixedPrecisionPlan mixed;
  mixed.default_scheme.scheme = WeightScheme::kW8A8Int8;
  mixed.layers["blocks.1.adaLN_modulation"] = LinearScheme{};
  auto plan = DitLinearPlan::FromMixed(*config, naming, mixed, "p.json");
  ASSERT_TRUE(plan.ok()) << plan.status();
  DitWeights split = load(&*plan, true);
  EXPECT_EQ(split.modulations, nullptr);
  for (const DitBlockWeights& block : split.blocks) EXPECT_NE(block.adaln, nullptr);
}

TEST(DitWeightsTest, ErrorsNameTheTensor) {
  auto tensors = DemoTensors();
  tensors.erase("blocks.3.mlp.fc2.bias");
  const std::string config_text = test_data::ReadTestFile(dit_test::kDemoDitDir + "/config.json");
  CpuDitOps ops;
  auto missing = DitModel::Load(WriteModel("dit_missing", config_text, tensors), &ops);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("blocks.3.mlp.fc2.bias"), std::string::npos) << missing.status();

  tensors = DemoTensors();
  tensors.at("y_embedder.weight").first = {10, 128};
  tensors.at("y_embedder.weight").second.resize(10 * 128);
  auto shape = DitModel::Load(WriteModel("dit_bad_shape", config_text, tensors), &ops);
  ASSERT_FALSE(shape.ok());
  EXPECT_NE(shape.status().message().find("y_embedder.weight"), std::string::npos) << shape.status();
}

}  // namespace
}  // namespace tern::runtime
