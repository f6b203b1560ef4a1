// The CPU backend's weights report the bytes they hold (DeviceWeight::bytes,
// LinearWeight::bytes), and LlamaModel::weight_bytes sums them: hand-made
// tables and layers of every kind against their exact sizes, and the demo
// LLM at several weight schemes against sizes computed from its config.
//
// The CPU backend computes in fp32 and keeps weight-only layers dequantized
// to fp32 (the reference GEMM's operand) and W8A8 codes decoded to fp32, so
// there a quantized layer costs at least what a dense one does; the CUDA
// backend's packed sizes are checked by tests/runtime/cuda/cuda_weight_bytes_test.cc.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/model/hf_config.h"
#include "runtime/model/llama_model.h"
#include "runtime/model/weight_scheme.h"
#include "tests/runtime/backend/weight_test_helpers.h"

namespace tern::runtime {
namespace {

constexpr size_t kF32 = sizeof(float);

using test_weights::Random;
using test_weights::Rtn;
using test_weights::View;

TEST(CpuWeightBytesTest, TablesAndDenseLayersHoldFp32) {
  CpuBackend backend;
  const std::vector<float> table = Random(3 * 4, 1);
  auto weight = backend.UploadWeight(View("table", table, {3, 4}));
  ASSERT_TRUE(weight.ok()) << weight.status();
  EXPECT_EQ((*weight)->bytes(), 12 * kF32);

  auto frequencies = backend.UploadFp32Table({1.0f, 0.5f, 0.25f, 0.125f, 0.0625f});
  ASSERT_TRUE(frequencies.ok()) << frequencies.status();
  EXPECT_EQ((*frequencies)->bytes(), 5 * kF32);

  const std::vector<float> w = Random(6 * 8, 2), b = Random(6, 3);
  const TensorView bias = View("b", b, {6});
  auto linear = backend.PrepareLinear(View("w", w, {6, 8}), &bias);
  ASSERT_TRUE(linear.ok()) << linear.status();
  EXPECT_EQ((*linear)->bytes(), (6 * 8 + 6) * kF32);

  const std::vector<float> part0 = Random(2 * 8, 4), part1 = Random(4 * 8, 5);
  auto fused = backend.PrepareFusedLinear({View("q", part0, {2, 8}), View("kv", part1, {4, 8})}, {});
  ASSERT_TRUE(fused.ok()) << fused.status();
  EXPECT_EQ((*fused)->bytes(), 6 * 8 * kF32);
}

TEST(CpuWeightBytesTest, QuantizedLayersHoldWhatTheirCpuArithmeticReads) {
  CpuBackend backend;
  const int64_t out = 8, in = 64;
  // Weight-only: the dequantized fp32 weight and the bias.
  for (const char* scheme : {"w4a16-g32", "w4a16-g32-asym", "w8a16"}) {
    auto linear = backend.PrepareQuantizedLinear(Rtn(scheme, out, in, /*bias=*/true));
    ASSERT_TRUE(linear.ok()) << scheme << ": " << linear.status();
    EXPECT_EQ((*linear)->bytes(), size_t(out * in + out) * kF32) << scheme;
  }
  // W8A8: the codes decoded to fp32, one scale per output channel, the bias.
  for (const char* scheme : {"w8a8-int8", "w8a8-fp8"}) {
    auto linear = backend.PrepareQuantizedLinear(Rtn(scheme, out, in, /*bias=*/true));
    ASSERT_TRUE(linear.ok()) << scheme << ": " << linear.status();
    EXPECT_EQ((*linear)->bytes(), size_t(out * in + out + out) * kF32) << scheme;
  }
  // With smoothing factors: one more fp32 per input channel.
  QuantizedLinear smoothed = Rtn("w8a8-int8", out, in, /*bias=*/false);
  smoothed.input_smoothing.assign(size_t(in), 1.0f);
  auto linear = backend.PrepareQuantizedLinear(smoothed);
  ASSERT_TRUE(linear.ok()) << linear.status();
  EXPECT_EQ((*linear)->bytes(), size_t(out * in + out + in) * kF32);
}

// models/tern-demo-llm; the environment's TERN_MODELS_DIR wins.
std::string DemoModel() {
  const char* env = std::getenv("TERN_MODELS_DIR");
  return std::string(env != nullptr && *env != '\0' ? env : TERN_MODELS_DIR) + "/tern-demo-llm";
}

size_t DemoWeightBytes(const std::string& scheme) {
  CpuBackend backend;
  LlamaModelOptions options;
  auto request = ParseWeightSchemeRequest(scheme);
  EXPECT_TRUE(request.ok()) << request.status();
  options.weight_scheme = *request;
  auto model = LlamaModel::Load(DemoModel(), &backend, options);
  EXPECT_TRUE(model.ok()) << scheme << ": " << model.status();
  return model.ok() ? (*model)->weight_bytes() : 0;
}

// Every element the CPU backend holds of the demo LLM (fp32), from its config.
struct DemoElements {
  size_t all = 0;                // tables, norms, linear weights (the tied lm_head is its own copy)
  size_t block_out_channels = 0;  // output channels of the decoder layers' linear layers
};

DemoElements CountDemoElements() {
  auto config = LoadHfConfig(DemoModel());
  EXPECT_TRUE(config.ok()) << config.status();
  const HfConfig& c = *config;
  EXPECT_EQ(c.num_local_experts, 0);
  EXPECT_FALSE(c.attention_bias);
  const size_t hidden = c.hidden_size, vocab = c.vocab_size, inter = c.intermediate_size;
  const size_t q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  DemoElements e;
  e.all = 2 * vocab * hidden + hidden + c.head_dim / 2;  // embed, lm_head, final norm, RoPE frequencies
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    e.all += 2 * hidden + (q + 2 * kv) * hidden + hidden * q + 2 * inter * hidden + hidden * inter;
    e.block_out_channels += (q + 2 * kv) + hidden + 2 * inter + hidden;
  }
  return e;
}

TEST(CpuWeightBytesTest, DemoModelSumsItsWeightsAtEveryScheme) {
  const DemoElements e = CountDemoElements();
  // As stored (fp16 in the files): fp32 on the CPU.
  EXPECT_EQ(DemoWeightBytes("auto"), e.all * kF32);
  // Weight-only layers are held dequantized: the same bytes as dense.
  EXPECT_EQ(DemoWeightBytes("w4a16-g128"), e.all * kF32);
  // W8A8 adds one fp32 weight scale per output channel of each block layer
  // (lm_head stays dense).
  EXPECT_EQ(DemoWeightBytes("w8a8-int8"), (e.all + e.block_out_channels) * kF32);
}

}  // namespace
}  // namespace tern::runtime
