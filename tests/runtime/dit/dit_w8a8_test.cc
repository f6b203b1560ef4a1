// W8A8 on the DiT (runtime/dit/dit_linear_plan.h): CpuDitOps' quantized
// linear against the arithmetic kernels/gemm/quant_gemm.h states, written
// out here (per-token scale, round half to even / e4m3, exact sums, the
// epilogue) and compared bitwise; the per-layer plans a weight_scheme makes
// (which layers, the plan file's errors, what ModelInfo reports); the demo
// DiT's forward pass quantized (close to dense, batch invariant, and a plan
// that keeps every layer dense is the dense model bit for bit).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/common/float8.h"
#include "kernels/gemm/quant_gemm.h"
#include "runtime/base/check.h"
#include "runtime/dit/cpu_dit_ops.h"
#include "runtime/dit/dit_linear_plan.h"
#include "runtime/dit/dit_model.h"
#include "runtime/dit/gaussian_noise.h"
#include "runtime/model/rtn_quantizer.h"
#include "runtime/model/safetensors.h"
#include "tests/runtime/dit/dit_golden.h"

namespace tern::runtime {
namespace {

DitStep StepOf(const std::vector<float>& t, const std::vector<int32_t>& y) {
  DitStep step;
  step.timesteps = t;
  step.labels = y;
  return step;
}

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(gen);
  return v;
}

// y = x W^T + b of a W8A8 layer, straight from quant_gemm.h's statement.
std::vector<float> DirectW8A8(const QuantizedLinear& q, const std::vector<float>& x, int64_t rows) {
  const bool fp8 = q.scheme.scheme == WeightScheme::kW8A8Fp8;
  const int64_t k = q.in_features, n = q.out_features;
  std::vector<float> y(size_t(rows * n));
  for (int64_t m = 0; m < rows; ++m) {
    float absmax = 0.0f;
    for (int64_t i = 0; i < k; ++i) absmax = std::max(absmax, std::fabs(x[m * k + i]));
    const float s = fp8 ? std::max(absmax / 448.0f, 1.0f / (448.0f * 512.0f)) : absmax / 127.0f;
    const float inv = fp8 ? 1.0f / s : (absmax > 0.0f ? 127.0f / absmax : 0.0f);
    std::vector<double> xq(static_cast<size_t>(k));
    for (int64_t i = 0; i < k; ++i) {
      const float v = x[m * k + i] * inv;
      xq[i] = fp8 ? double(kernels::Fp8E4M3ToFloat(kernels::FloatToFp8E4M3(v)))
                  : double(std::clamp(std::nearbyint(v), -128.0f, 127.0f));
    }
    for (int64_t j = 0; j < n; ++j) {
      double acc = 0.0;  // exact: INT8 sums are integers below 2^31, e4m3 products sum exactly in double here
      for (int64_t i = 0; i < k; ++i) {
        const uint8_t w = q.weight[j * k + i];
        acc += xq[i] * (fp8 ? double(kernels::Fp8E4M3ToFloat(w)) : double(int8_t(w)));
      }
      y[m * n + j] = s * (q.scales[j] * float(acc)) + (q.bias.empty() ? 0.0f : q.bias[j]);
    }
  }
  return y;
}

QuantizedLinear MakeLayer(WeightScheme scheme, int64_t out, int64_t in, uint32_t seed) {
  RtnOptions options;
  options.scheme.scheme = scheme;
  auto q = QuantizeRtn(Random(size_t(out * in), seed, 0.05f), out, in, options, Random(size_t(out), seed + 1, 0.1f));
  CHECK(q.ok()) << q.status();
  return *std::move(q);
}

class CpuW8A8LinearTest : public ::testing::TestWithParam<WeightScheme> {};

TEST_P(CpuW8A8LinearTest, IsTheReferenceArithmeticBitForBitAndBatchInvariant) {
  const int64_t out = 48, in = 80, tokens = 5, samples = 3;
  const QuantizedLinear q = MakeLayer(GetParam(), out, in, 7);
  CpuDitOps ops;
  auto linear = ops.PrepareQuantizedLinear(q);
  ASSERT_TRUE(linear.ok()) << linear.status();
  EXPECT_EQ((*linear)->scheme(), q.scheme);

  // Rows of very different magnitudes, a zero row and an outlier column.
  std::vector<float> x = Random(size_t(samples * tokens * in), 11);
  for (int64_t i = 0; i < in; ++i) x[2 * in + i] = 0.0f;
  for (int64_t r = 0; r < samples * tokens; ++r) x[r * in + 17] *= 40.0f;
  for (int64_t i = 0; i < in; ++i) x[7 * in + i] *= 1e-3f;
  const std::vector<float> want = DirectW8A8(q, x, samples * tokens);

  const std::vector<float> t(samples, 500.0f);
  const std::vector<int32_t> y(samples, 1);
  ASSERT_TRUE(ops.BeginStep(StepOf(t, y)).ok());
  Tensor xs = ops.Scratch(0, samples * tokens, in);
  Tensor ys = ops.Scratch(1, samples * tokens, out);
  ops.CopyFromHost(x.data(), xs);
  ops.Linear(xs, **linear, ys);
  ASSERT_TRUE(ops.FinishStep().ok());
  std::vector<float> got(want.size());
  ops.ReadToHost(ys, got.data());
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(got[i], want[i]) << "element " << i;

  // The last sample alone gives its rows bitwise.
  const std::vector<float> t1(1, 20.0f);
  const std::vector<int32_t> y1(1, 3);
  ASSERT_TRUE(ops.BeginStep(StepOf(t1, y1)).ok());
  Tensor x1 = ops.Scratch(0, tokens, in);
  Tensor o1 = ops.Scratch(1, tokens, out);
  ops.CopyFromHost(x.data() + (samples - 1) * tokens * in, x1);
  ops.LinearGeluTanh(x1, **linear, o1);
  ASSERT_TRUE(ops.FinishStep().ok());
  std::vector<float> alone(size_t(tokens * out));
  ops.ReadToHost(o1, alone.data());
  for (int64_t i = 0; i < tokens * out; ++i) {
    const float v = want[(samples - 1) * tokens * out + i];
    const float gelu = 0.5f * v * (1.0f + std::tanh(0.7978845608f * (v + 0.044715f * v * v * v)));
    ASSERT_NEAR(alone[i], gelu, 1e-5f * std::max(1.0f, std::fabs(gelu))) << "element " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Schemes, CpuW8A8LinearTest,
                         ::testing::Values(WeightScheme::kW8A8Int8, WeightScheme::kW8A8Fp8),
                         [](const auto& info) { return info.param == WeightScheme::kW8A8Fp8 ? "Fp8" : "Int8"; });

TEST(CpuW8A8LinearTest, RefusesStaticScalesAndSmoothing) {
  CpuDitOps ops;
  QuantizedLinear q = MakeLayer(WeightScheme::kW8A8Int8, 16, 32, 3);
  q.input_scale = 0.1f;
  auto made = ops.PrepareQuantizedLinear(q);
  EXPECT_EQ(made.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(made.status().message().find("per token"), std::string::npos) << made.status();
}

DitConfig DemoConfig() {
  auto config = LoadDitConfig(dit_test::kDemoDitDir);
  CHECK(config.ok()) << config.status();
  return *config;
}

TEST(DitLinearPlanTest, UniformSchemesQuantizeTheBlocksLayersOnly) {
  const DitConfig config = DemoConfig();
  auto plan = DitLinearPlan::Create(config, DitNaming::kTern, *ParseWeightSchemeRequest("int8"));
  ASSERT_TRUE(plan.ok()) << plan.status();
  int quantized = 0;
  for (const DitLinearModule& m : DitLinearModules(config, DitNaming::kTern)) {
    const bool int8 = plan->For(m.name).scheme == WeightScheme::kW8A8Int8;
    EXPECT_EQ(int8, m.block_layer()) << m.name;
    quantized += int8 ? 1 : 0;
  }
  EXPECT_EQ(quantized, 5 * config.depth);
  EXPECT_EQ(plan->For("blocks.3.adaLN_modulation").scheme, WeightScheme::kW8A8Int8);
  EXPECT_EQ(plan->For("x_embedder").scheme, WeightScheme::kDense);
  EXPECT_EQ(plan->For("final_layer.linear").scheme, WeightScheme::kDense);
  EXPECT_EQ(plan->Describe("bf16"), "w8a8-int8 (dense x 5, w8a8-int8 x 40; quantized at load, dense layers in bf16)");

  auto dense = DitLinearPlan::Create(config, DitNaming::kTern, WeightSchemeRequest{});
  ASSERT_TRUE(dense.ok());
  EXPECT_FALSE(dense->any_quantized());
  EXPECT_EQ(dense->Describe("fp32"), "fp32");

  auto w4 = DitLinearPlan::Create(config, DitNaming::kTern, *ParseWeightSchemeRequest("w4a16"));
  EXPECT_EQ(w4.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(w4.status().message().find("is not a scheme a DiT runs"), std::string::npos) << w4.status();
}

TEST(DitLinearPlanTest, PlansNameLayersAndKeepTheirDefaultToBlockLayers) {
  const DitConfig config = DemoConfig();
  MixedPrecisionPlan mixed;
  mixed.default_scheme.scheme = WeightScheme::kW8A8Fp8;
  mixed.layers["blocks.2.mlp.fc1"] = LinearScheme{};
  mixed.layers["final_layer.linear"].scheme = WeightScheme::kW8A8Int8;
  auto plan = DitLinearPlan::FromMixed(config, DitNaming::kTern, mixed, "p.json");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->For("blocks.2.mlp.fc1").scheme, WeightScheme::kDense);
  EXPECT_EQ(plan->For("blocks.2.mlp.fc2").scheme, WeightScheme::kW8A8Fp8);
  EXPECT_EQ(plan->For("final_layer.linear").scheme, WeightScheme::kW8A8Int8);
  EXPECT_EQ(plan->For("t_embedder.fc1").scheme, WeightScheme::kDense);
  EXPECT_EQ(plan->Describe("fp16"),
            "mixed (dense x 5, w8a8-fp8 x 39, w8a8-int8 x 1; quantized at load, dense layers in fp16)");

  mixed.layers["blocks.8.attn.qkv"] = LinearScheme{};
  auto unknown = DitLinearPlan::FromMixed(config, DitNaming::kTern, mixed, "p.json");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("mixed-precision plan p.json names \"blocks.8.attn.qkv\", which is not "
                                            "a linear layer of this model"),
            std::string::npos)
      << unknown.status();
}

TEST(DitLinearPlanTest, DiffusersQkvPartsShareAScheme) {
  DitConfig config = DemoConfig();
  MixedPrecisionPlan mixed;
  mixed.default_scheme.scheme = WeightScheme::kW8A8Int8;
  mixed.layers["transformer_blocks.1.attn1.to_k"] = LinearScheme{};
  auto plan = DitLinearPlan::FromMixed(config, DitNaming::kDiffusers, mixed, "p.json");
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(plan.status().message().find("they share a scheme"), std::string::npos) << plan.status();
  for (const char* part : {"to_q", "to_v"}) mixed.layers[std::string("transformer_blocks.1.attn1.") + part] = {};
  EXPECT_TRUE(DitLinearPlan::FromMixed(config, DitNaming::kDiffusers, mixed, "p.json").ok());
}

// The demo DiT's eps for (x, t, y) on `ops` loaded with `scheme`.
std::vector<float> DemoEps(const std::string& scheme, const std::vector<float>& x, const std::vector<float>& t,
                           const std::vector<int32_t>& y, const MixedPrecisionPlan* plan = nullptr,
                           bool fuse_activation_quantization = true) {
  CpuDitOps ops;
  DitModelOptions options;
  options.weight_scheme = *ParseWeightSchemeRequest(scheme);
  options.plan = plan;
  options.fuse_activation_quantization = fuse_activation_quantization;
  auto model = DitModel::Load(dit_test::kDemoDitDir, &ops, options);
  CHECK(model.ok()) << model.status();
  std::vector<float> eps(x.size());
  const absl::Status s = (*model)->Forward({x, t, y, {}}, absl::MakeSpan(eps));
  CHECK(s.ok()) << s;
  return eps;
}

double RelativeL2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

TEST(DitW8A8ModelTest, QuantizedForwardIsCloseToDenseAndBatchInvariant) {
  const int64_t pixels = 32 * 32;
  std::vector<float> x = GaussianNoise(42, 2 * pixels);
  const std::vector<float> t = {500.0f, 20.0f};
  const std::vector<int32_t> y = {3, 10};
  const std::vector<float> dense = DemoEps("auto", x, t, y);
  for (const char* scheme : {"w8a8-int8", "w8a8-fp8"}) {
    const std::vector<float> eps = DemoEps(scheme, x, t, y);
    const double error = RelativeL2(eps, dense);
    std::printf("%s: relative L2 error of eps against fp32: %.4g\n", scheme, error);
    // Per-token 8-bit activations and per-channel weights: each layer adds
    // about 2^-8 (INT8) to 2^-4 (e4m3's 3 fraction bits) of relative
    // error; 40 layers in series stay well under 10 % on this model.
    EXPECT_GT(error, 0.0) << scheme;
    EXPECT_LT(error, 0.1) << scheme;
    // The second sample alone: bitwise its rows of the batch.
    const std::vector<float> x1(x.begin() + pixels, x.end());
    const std::vector<float> alone = DemoEps(scheme, x1, {t[1]}, {y[1]});
    for (int64_t i = 0; i < pixels; ++i) ASSERT_EQ(alone[i], eps[pixels + i]) << scheme << " element " << i;
  }
  MixedPrecisionPlan all_dense;  // default "dense"
  EXPECT_EQ(DemoEps("mixed:in-memory", x, t, y, &all_dense), dense);
}

// The LayerNorm + modulate ops quantizing the W8A8 layers' inputs as they
// write them (DitModelOptions::fuse_activation_quantization) give the
// layers the codes they would have made themselves: eps bitwise equal,
// for both code types and for a plan mixing W8A8 and dense layers.
TEST(DitW8A8ModelTest, ActivationsQuantizedByTheirProducersGiveTheSameEps) {
  const int64_t pixels = 32 * 32;
  const std::vector<float> x = GaussianNoise(7, 3 * pixels);
  const std::vector<float> t = {999.0f, 300.0f, 1.0f};
  const std::vector<int32_t> y = {0, 10, 9};
  MixedPrecisionPlan mixed;
  mixed.default_scheme.scheme = WeightScheme::kW8A8Fp8;
  mixed.layers["blocks.0.attn.qkv"].scheme = WeightScheme::kDense;
  mixed.layers["blocks.3.mlp.fc1"].scheme = WeightScheme::kDense;
  for (const char* scheme : {"w8a8-int8", "w8a8-fp8", "mixed:in-memory"}) {
    const MixedPrecisionPlan* plan = std::string(scheme) == "mixed:in-memory" ? &mixed : nullptr;
    const std::vector<float> fused = DemoEps(scheme, x, t, y, plan, /*fuse_activation_quantization=*/true);
    const std::vector<float> unfused = DemoEps(scheme, x, t, y, plan, /*fuse_activation_quantization=*/false);
    EXPECT_EQ(fused, unfused) << scheme;
    EXPECT_NE(fused, DemoEps("auto", x, t, y)) << scheme << ": the layers were not quantized";
  }
}

// The op itself: a quantized output holds the codes and scales of the
// plain output quantized per row, at a row stride padded to 16.
TEST(CpuW8A8LinearTest, LayerNormModulateWritesTheCodesOfItsOutput) {
  constexpr int64_t kRows = 6, kCols = 40;
  CpuDitOps ops;
  const std::vector<float> timesteps = {1.0f, 2.0f};
  const std::vector<int32_t> labels = {0, 0};
  for (DType codes : {DType::kI8, DType::kF8E4M3}) {
    ASSERT_TRUE(ops.BeginStep({.timesteps = timesteps, .labels = labels, .image = {}}).ok());
    std::vector<float> values(kRows * kCols), mod(2 * 2 * kCols);
    for (size_t i = 0; i < values.size(); ++i) values[i] = std::sin(0.37f * float(i)) * float(1 + i % 7);
    for (size_t i = 0; i < mod.size(); ++i) mod[i] = 0.1f * std::cos(0.11f * float(i));
    Tensor x = ops.Scratch(0, kRows, kCols), m = ops.Scratch(1, 2, 2 * kCols), plain = ops.Scratch(2, kRows, kCols);
    ops.CopyFromHost(values.data(), x);
    ops.CopyFromHost(mod.data(), m);
    const Tensor q = ops.QuantizedScratch(0, kRows, kCols, codes);
    EXPECT_EQ(q.stride, 48);
    ops.LayerNormModulate(x, m.Columns(0, kCols), m.Columns(kCols, kCols), 1e-6f, plain);
    ops.LayerNormModulate(x, m.Columns(0, kCols), m.Columns(kCols, kCols), 1e-6f, q);
    ASSERT_TRUE(ops.FinishStep().ok());
    kernels::ActivationQuantParams a;
    a.type = codes == DType::kI8 ? kernels::ActivationQuant::kInt8 : kernels::ActivationQuant::kFp8E4M3;
    a.rows = kRows;
    a.k = kCols;
    a.x_stride = plain.stride;
    std::vector<uint8_t> want(kRows * kCols);
    std::vector<float> want_scales(kRows);
    kernels::QuantizeActivationsReference(a, static_cast<const float*>(plain.data), want.data(), want_scales.data());
    for (int64_t r = 0; r < kRows; ++r) {
      EXPECT_EQ(q.row_scales[r], want_scales[r]) << r;
      for (int64_t c = 0; c < kCols; ++c) {
        ASSERT_EQ(static_cast<const uint8_t*>(q.data)[r * q.stride + c], want[r * kCols + c]) << r << ", " << c;
      }
    }
  }
}

// The bytes the demo DiT's weights hold on the CPU ops: dense, 4 a stored
// parameter; W8A8, one a quantized weight plus fp32 scales and biases.
TEST(DitW8A8ModelTest, WeightBytesFollowTheScheme) {
  auto store = WeightStore::Open(dit_test::kDemoDitDir);
  ASSERT_TRUE(store.ok()) << store.status();
  size_t sizes[2] = {0, 0};
  const char* schemes[2] = {"auto", "w8a8-int8"};
  for (int i = 0; i < 2; ++i) {
    CpuDitOps ops;
    DitModelOptions options;
    options.weight_scheme = *ParseWeightSchemeRequest(schemes[i]);
    auto model = DitModel::Load(dit_test::kDemoDitDir, &ops, options);
    ASSERT_TRUE(model.ok()) << model.status();
    sizes[i] = (*model)->weight_bytes();
  }
  EXPECT_EQ(sizes[0], 4 * size_t((*store)->TotalParameters()));
  // The 40 block layers' weights go from 4 bytes to 1 and gain a scale per
  // output row; everything else stays.
  size_t block_weights = 0, block_rows = 0;
  for (const std::string& name : (*store)->Names()) {
    const TensorView t = *(*store)->Get(name);
    if (name.rfind("blocks.", 0) == 0 && t.shape.size() == 2) {
      block_weights += size_t(t.numel());
      block_rows += size_t(t.shape[0]);
    }
  }
  EXPECT_EQ(sizes[1], sizes[0] - 3 * block_weights + 4 * block_rows);
}

}  // namespace
}  // namespace tern::runtime
