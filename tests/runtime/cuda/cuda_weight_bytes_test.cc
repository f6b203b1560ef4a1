// The CUDA backend's weights report the device bytes they hold (label gpu;
// skipped without a device): a dense fp16 layer its [out, in] halves and
// bias, a W4A16 layer its packed codes, scales and zero codes
// (kernels/gemm/weight_only_pack.h) and bias, a W8A8 layer its byte codes and
// fp32 scales and bias; and the demo LLM at w4a16-g128 holds much less than
// at fp16 (its embedding and lm_head stay dense).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/gemm/weight_only_pack.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/device_probe.h"
#include "runtime/model/hf_config.h"
#include "runtime/model/llama_model.h"
#include "runtime/model/weight_scheme.h"
#include "tests/runtime/backend/weight_test_helpers.h"

namespace tern::runtime {
namespace {

constexpr int64_t kOut = 256, kIn = 512;

using test_weights::Random;
using test_weights::View;

QuantizedLinear Rtn(const std::string& scheme, bool bias) { return test_weights::Rtn(scheme, kOut, kIn, bias, 7); }

// A CUDA backend computing in fp16 (dense weights are held in fp16).
std::unique_ptr<CudaBackend> Fp16Backend() {
  CudaBackendOptions options;
  options.compute_dtype = DType::kF16;
  auto backend = CudaBackend::Create(options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  return backend.ok() ? std::move(*backend) : nullptr;
}

TEST(CudaWeightBytesTest, LayersHoldTheirDeviceBuffers) {
  if (ListCudaDevices().empty()) GTEST_SKIP() << "no CUDA device";
  auto backend = Fp16Backend();
  ASSERT_NE(backend, nullptr);

  const std::vector<float> w = Random(size_t(kOut * kIn), 1), b = Random(size_t(kOut), 2);
  const TensorView bias = View("b", b, {kOut});
  auto dense = backend->PrepareLinear(View("w", w, {kOut, kIn}), &bias);
  ASSERT_TRUE(dense.ok()) << dense.status();
  const size_t dense_bytes = size_t(kOut * kIn + kOut) * 2;
  EXPECT_EQ((*dense)->bytes(), dense_bytes);

  const std::vector<float> table = Random(128, 3);
  auto frequencies = backend->UploadFp32Table(table);
  ASSERT_TRUE(frequencies.ok()) << frequencies.status();
  EXPECT_EQ((*frequencies)->bytes(), 128 * sizeof(float));

  for (const char* scheme : {"w4a16-g128", "w4a16-g128-asym", "w8a16"}) {
    const QuantizedLinear q = Rtn(scheme, /*bias=*/true);
    kernels::WeightOnlyLayout layout;
    layout.bits = WeightSchemeBits(q.scheme.scheme);
    layout.n = kOut;
    layout.k = kIn;
    layout.group_size = q.group_size;
    layout.groups = q.num_groups();
    kernels::PackedWeightOnly packed;
    ASSERT_EQ(kernels::PackWeightOnly(layout, q.weight.data(), q.scales.data(), q.zeros.data(), &packed), "");
    // Codes: every code once, packed without padding at this shape.
    EXPECT_EQ(packed.codes.size(), size_t(kOut * kIn * layout.bits / 8)) << scheme;
    auto linear = backend->PrepareQuantizedLinear(q);
    ASSERT_TRUE(linear.ok()) << scheme << ": " << linear.status();
    EXPECT_EQ((*linear)->bytes(), packed.DeviceBytes() + size_t(kOut) * 2) << scheme;
    EXPECT_LT((*linear)->bytes(), dense_bytes * (layout.bits == 4 ? 0.3 : 0.55)) << scheme;
  }

  // W8A8: a byte per weight, an fp32 scale per output channel, an fp32 bias.
  auto w8a8 = backend->PrepareQuantizedLinear(Rtn("w8a8-int8", /*bias=*/true));
  ASSERT_TRUE(w8a8.ok()) << w8a8.status();
  EXPECT_EQ((*w8a8)->bytes(), size_t(kOut * kIn) + size_t(kOut) * 4 + size_t(kOut) * 4);
}

std::string DemoModel() {
  const char* env = std::getenv("TERN_MODELS_DIR");
  return std::string(env != nullptr && *env != '\0' ? env : TERN_MODELS_DIR) + "/tern-demo-llm";
}

size_t DemoWeightBytes(const std::string& scheme) {
  auto backend = Fp16Backend();
  if (backend == nullptr) return 0;
  LlamaModelOptions options;
  auto request = ParseWeightSchemeRequest(scheme);
  EXPECT_TRUE(request.ok()) << request.status();
  options.weight_scheme = *request;
  auto model = LlamaModel::Load(DemoModel(), backend.get(), options);
  EXPECT_TRUE(model.ok()) << scheme << ": " << model.status();
  return model.ok() ? (*model)->weight_bytes() : 0;
}

TEST(CudaWeightBytesTest, DemoModelAtW4A16HoldsAQuarterOfItsBlockWeights) {
  if (ListCudaDevices().empty()) GTEST_SKIP() << "no CUDA device";
  auto config = LoadHfConfig(DemoModel());
  ASSERT_TRUE(config.ok()) << config.status();
  const HfConfig& c = *config;
  const size_t hidden = size_t(c.hidden_size), vocab = size_t(c.vocab_size), inter = size_t(c.intermediate_size);
  const size_t q = size_t(c.num_attention_heads * c.head_dim), kv = size_t(c.num_key_value_heads * c.head_dim);
  const size_t layers = size_t(c.num_hidden_layers);
  const size_t block_linear = layers * ((q + 2 * kv) * hidden + hidden * q + 3 * inter * hidden);
  const size_t norms = (2 * layers + 1) * hidden;
  // RoPE frequencies: fp32, head_dim / 2 of them, in an allocation of at least 256 bytes.
  const size_t rope = std::max<size_t>(size_t(c.head_dim / 2) * 4, 256);
  const size_t fp16 = DemoWeightBytes("auto");  // as stored (float16)
  EXPECT_EQ(fp16, 2 * (2 * vocab * hidden + norms + block_linear) + rope);
  const size_t w4 = DemoWeightBytes("w4a16-g128");
  const size_t dense_rest = 2 * (2 * vocab * hidden + norms) + rope;  // embedding, lm_head, norms stay
  ASSERT_GT(w4, dense_rest);
  // Half a byte a weight, plus one fp16 or fp32 scale per 128 weights.
  EXPECT_GE(w4 - dense_rest, block_linear / 2 + block_linear / 128 * 2);
  EXPECT_LE(w4 - dense_rest, block_linear / 2 + block_linear / 128 * 4);
}

}  // namespace
}  // namespace tern::runtime
