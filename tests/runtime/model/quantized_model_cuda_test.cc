// Quantized schemes end to end on the CUDA backend (label gpu; skipped
// without a device): tern's demo LLM quantized at load (round-to-nearest,
// the same codes on both backends) gives the logits of the CPU reference
// path of the same scheme. Weight-only: an 80-token prefill takes the
// large-M path (dequantize + cuBLAS), then single-token decode steps take
// the tensor-core weight-only GEMM. W8A8 (FP8, INT8): per-token activation
// quantization, cuBLASLt and the epilogue on every step. From the second
// decode step on the CUDA backend records and replays a graph. Weight-only
// schemes in fp32 compute what the CPU does up to summation order; in fp16
// and bf16 the activations round between ops, so the bound is the larger of
// a fixed tolerance and three times the dense model's own CUDA-versus-CPU
// spread in that dtype. W8A8 layers quantize activations that differ in
// their last bits between backends (summation order; FP8 sums also keep 13
// fraction bits per tensor-core step, kernels/gemm/quant_gemm.h), so codes
// at a rounding boundary flip by one step and the flips carry through the
// layers: on the CPU path alone, moving each quantizer input by one ulp
// with probability 1/2 moves this model's logits by up to 0.031 (INT8) and
// 0.064 (FP8) normwise, over the prefill and the decode steps. Their bounds
// are about twice that (a wrong scale or layout moves logits by order 1).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/device_probe.h"
#include "runtime/model/llama_model.h"

namespace tern::runtime {
namespace {

constexpr int32_t kBlockSize = 16;
constexpr int32_t kPrompt = 80;  // more rows than the weight-only GEMM takes
constexpr int32_t kDecodeSteps = 4;

// models/tern-demo-llm; the environment's TERN_MODELS_DIR wins (a test
// binary run from a bundle on another machine).
std::string DemoModel() {
  const char* env = std::getenv("TERN_MODELS_DIR");
  return std::string(env != nullptr && *env != '\0' ? env : TERN_MODELS_DIR) + "/tern-demo-llm";
}

// Logits of the prompt's last row, then of each decode step (fixed next
// tokens): [1 + kDecodeSteps, vocab] concatenated.
absl::StatusOr<std::vector<float>> RunDemo(Backend& backend, const std::string& scheme, std::string* description) {
  LlamaModelOptions options;
  auto request = ParseWeightSchemeRequest(scheme);
  if (!request.ok()) return request.status();
  options.weight_scheme = *request;
  auto model = LlamaModel::Load(DemoModel(), &backend, options);
  if (!model.ok()) return model.status();
  *description = (*model)->weight_scheme();
  auto cache = backend.AllocateKvCache((*model)->CacheSpec(8, kBlockSize));
  if (!cache.ok()) return cache.status();
  const int32_t vocab = int32_t((*model)->config().vocab_size);
  std::vector<float> out;
  ForwardBatch batch;
  for (int32_t p = 0; p < kPrompt; ++p) {
    batch.token_ids.push_back((p * 37 + 11) % vocab);
    batch.positions.push_back(p);
    batch.slots.push_back(p);
  }
  batch.logits_rows = {kPrompt - 1};
  batch.query_start = {0, kPrompt};
  batch.context_lens = {kPrompt};
  batch.block_indptr = {0, 5};
  batch.block_ids = {0, 1, 2, 3, 4};
  std::vector<float> logits;
  if (auto status = (*model)->Forward(batch, **cache, &logits); !status.ok()) return status;
  out.insert(out.end(), logits.begin(), logits.end());
  for (int32_t step = 0; step < kDecodeSteps; ++step) {
    const int32_t position = kPrompt + step;
    ForwardBatch decode;
    decode.token_ids = {(position * 53 + 5) % vocab};
    decode.positions = {position};
    decode.slots = {position};
    decode.logits_rows = {0};
    decode.query_start = {0, 1};
    decode.context_lens = {position + 1};
    decode.block_indptr = {0, 6};  // 81..84 tokens: six blocks
    decode.block_ids = {0, 1, 2, 3, 4, 5};
    if (auto status = (*model)->Forward(decode, **cache, &logits); !status.ok()) return status;
    out.insert(out.end(), logits.begin(), logits.end());
  }
  return out;
}

double RelativeDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, ref = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    diff = std::max(diff, std::fabs(double(a[i]) - b[i]));
    ref = std::max(ref, std::fabs(double(b[i])));
  }
  return diff / ref;
}

struct Case {
  const char* scheme;
  DType dtype;
  double tolerance;  // normwise, against the CPU reference of the scheme
};

class QuantizedModelCudaTest : public ::testing::TestWithParam<Case> {};

TEST_P(QuantizedModelCudaTest, MatchesTheCpuReferenceOfTheScheme) {
  if (ListCudaDevices().empty()) GTEST_SKIP() << "no CUDA device";
  const Case c = GetParam();
  CpuBackend cpu;
  std::string cpu_scheme, cuda_scheme;
  auto want = RunDemo(cpu, c.scheme, &cpu_scheme);
  ASSERT_TRUE(want.ok()) << want.status();
  CudaBackendOptions options;
  options.compute_dtype = c.dtype;
  auto cuda = CudaBackend::Create(options);
  ASSERT_TRUE(cuda.ok()) << cuda.status();
  auto got = RunDemo(**cuda, c.scheme, &cuda_scheme);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(cuda_scheme, cpu_scheme);
  ASSERT_EQ(got->size(), want->size());
  // The dense model's own CUDA-versus-CPU spread in this dtype: the
  // quantized layers may add to it, not multiply it.
  std::string dense_scheme;
  auto dense_cpu = RunDemo(cpu, "auto", &dense_scheme);
  ASSERT_TRUE(dense_cpu.ok()) << dense_cpu.status();
  auto dense_backend = CudaBackend::Create(options);
  ASSERT_TRUE(dense_backend.ok()) << dense_backend.status();
  auto dense_cuda = RunDemo(**dense_backend, "auto", &dense_scheme);
  ASSERT_TRUE(dense_cuda.ok()) << dense_cuda.status();
  const size_t vocab = want->size() / (1 + kDecodeSteps);
  const auto part_of = [&](const std::vector<float>& v, int32_t part) {
    return std::vector<float>(v.begin() + part * vocab, v.begin() + (part + 1) * vocab);
  };
  for (int32_t part = 0; part <= kDecodeSteps; ++part) {
    const double dense_spread = RelativeDiff(part_of(*dense_cuda, part), part_of(*dense_cpu, part));
    const double diff = RelativeDiff(part_of(*got, part), part_of(*want, part));
    EXPECT_LT(diff, std::max(c.tolerance, 3 * dense_spread))
        << c.scheme << " in " << DTypeSafetensorsName(c.dtype) << ": "
        << (part == 0 ? "prefill of 80 tokens" : "decode step") << " " << part
        << "; the dense model's CUDA-versus-CPU spread is " << dense_spread;
  }
  const auto stats = static_cast<CudaBackend&>(**cuda).graph_stats();
  EXPECT_GE(stats.replayed + stats.captured, 1) << "no decode step ran as a graph";
}

INSTANTIATE_TEST_SUITE_P(Schemes, QuantizedModelCudaTest,
                         ::testing::Values(Case{"w8a16", DType::kF32, 1e-4}, Case{"w4a16-g128", DType::kF32, 1e-4},
                                           Case{"w8a16", DType::kF16, 2e-2}, Case{"w4a16-g128", DType::kF16, 2e-2},
                                           Case{"w4a16-g32-asym", DType::kF16, 2e-2},
                                           Case{"w8a16-g64-asym", DType::kBF16, 6e-2},
                                           Case{"w4a16-g128", DType::kBF16, 6e-2}, Case{"fp8", DType::kF32, 0.15},
                                           Case{"int8", DType::kF32, 0.08}, Case{"fp8", DType::kF16, 0.15},
                                           Case{"int8", DType::kBF16, 6e-2}),
                         [](const auto& info) {
                           std::string name =
                               std::string(info.param.scheme) + "_" + DTypeSafetensorsName(info.param.dtype);
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace tern::runtime
