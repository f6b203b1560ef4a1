// W8A8 DiT linears on CUDA (runtime/dit/cuda_dit_w8a8_linear.h) against the
// CPU ops of the same scheme (the reference arithmetic of
// kernels/gemm/quant_gemm.h), INT8 and FP8, bf16 and fp16 (and fp32): single
// layers at the demo DiT's and DiT-XL/2's shapes, with and without the
// GELU, per-sample rows (adaLN) and token rows; the demo DiT's whole
// forward pass quantized, eagerly and through a captured and a replayed
// CUDA graph; batch invariance bitwise. Label gpu: every test skips without
// a GPU; FP8 cases skip below compute capability 8.9, where the ops must
// refuse FP8 with FAILED_PRECONDITION instead (checked).
//
// Tolerances, from the arithmetic. Both sides get the same x (rounded to
// the compute dtype first), so the activation codes and row scales are
// equal (the quantization kernel is bit-exact with the reference). INT8
// sums are exact in int32 on both, and the epilogue s * (w * acc) + b is
// fp32 on both, so the CUDA output is the CPU's rounded once to the dtype
// (plus an fp32 FMA's ulp): error / max |out| <= 2^-8 (bf16), 2^-11 (fp16),
// 1e-6 (fp32). FP8: the tensor cores keep 13 fraction bits within each
// 32-input step and cuBLASLt adds the steps in fp32 every 128 inputs, so
// sums differ from the CPU's exact ones by up to (K / 32) * 2^-13 of their
// scale (the LLM W8A8 tests' bound), added to the rounding above. Metric:
// max |gpu - cpu| / max |cpu| over the output.
// A whole forward pass: the CPU runs fp32 activations, CUDA rounds them to
// bf16/fp16 before each quantization, so now and then a code flips by one
// step; measured against the CPU's quantized model, the error stays within
// twice the dense model's bounds against PyTorch (cuda_dit_ops_test.cc:
// bf16 0.2 max abs / 3e-2 relative L2, fp16 3e-2 / 5e-3).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "runtime/dit/cpu_dit_ops.h"
#include "runtime/dit/cuda_dit_ops.h"
#include "runtime/dit/dit_model.h"
#include "runtime/dit/gaussian_noise.h"
#include "runtime/model/dtype.h"
#include "runtime/model/rtn_quantizer.h"
#include "tests/runtime/dit/cuda_dit_test_util.h"
#include "tests/runtime/dit/dit_golden.h"

namespace tern::runtime {
namespace {

using dit_test::DtypeName;
using dit_test::ForwardEps;
using dit_test::MakeCudaOps;
using dit_test::MaxRelativeError;
using dit_test::RoundTo;

DitStep StepOf(const std::vector<float>& t, const std::vector<int32_t>& y) {
  DitStep step;
  step.timesteps = t;
  step.labels = y;
  return step;
}

bool HasFp8() {
  int major = 0, minor = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0);
  return major * 10 + minor >= 89;
}

std::vector<float> NormalValues(size_t n, uint32_t seed, float scale, DType round_to = DType::kF32) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = RoundTo(round_to, dist(gen));
  return v;
}

double RoundingBound(DType d) { return d == DType::kF32 ? 1e-6 : d == DType::kF16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8); }

// out of one linear over `rows` rows of `samples` samples on `ops`.
std::vector<float> RunLinear(DitOps& ops, const DitLinear& linear, const std::vector<float>& x, int64_t rows,
                             int64_t samples, bool gelu) {
  const std::vector<float> t(size_t(samples), 400.0f);
  const std::vector<int32_t> y(size_t(samples), 2);
  EXPECT_TRUE(ops.BeginStep(StepOf(t, y)).ok());
  Tensor xs = ops.Scratch(0, rows, linear.in_features());
  Tensor out = ops.Scratch(1, rows, linear.out_features());
  ops.CopyFromHost(x.data(), xs);
  if (gelu) {
    ops.LinearGeluTanh(xs, linear, out);
  } else {
    ops.Linear(xs, linear, out);
  }
  const absl::Status s = ops.FinishStep();
  EXPECT_TRUE(s.ok()) << s;
  std::vector<float> result(size_t(rows * linear.out_features()));
  ops.ReadToHost(out, result.data());
  return result;
}

struct LinearCase {
  const char* name;
  int64_t out, in, rows_per_sample;
  bool gelu;
};

TEST(CudaDitW8A8Test, LinearsMatchTheCpuReference) {
  const LinearCase cases[] = {
      {"demo qkv", 384, 128, 256, false},     {"demo fc1 + gelu", 512, 128, 256, true},
      {"demo fc2", 128, 512, 256, false},     {"demo adaLN (a row a sample)", 768, 128, 1, false},
      {"XL/2 fc2", 1152, 4608, 16, false},    {"XL/2 fc1 + gelu", 4608, 1152, 16, true},
  };
  for (DType dtype : {DType::kBF16, DType::kF16, DType::kF32}) {
    auto ops = MakeCudaOps(dtype);
    if (ops == nullptr) GTEST_SKIP() << "no CUDA device";
    for (WeightScheme scheme : {WeightScheme::kW8A8Int8, WeightScheme::kW8A8Fp8}) {
      const bool fp8 = scheme == WeightScheme::kW8A8Fp8;
      LinearScheme s;
      s.scheme = scheme;
      if (fp8 && !HasFp8()) {
        EXPECT_EQ(ops->CheckWeightScheme(s).code(), absl::StatusCode::kFailedPrecondition);
        continue;
      }
      ASSERT_TRUE(ops->CheckWeightScheme(s).ok());
      for (const LinearCase& c : cases) {
        RtnOptions options;
        options.scheme = s;
        auto q = QuantizeRtn(NormalValues(size_t(c.out * c.in), 5, 0.03f), c.out, c.in, options,
                             NormalValues(size_t(c.out), 6, 0.1f));
        ASSERT_TRUE(q.ok()) << q.status();
        CpuDitOps cpu;
        auto cpu_linear = cpu.PrepareQuantizedLinear(*q);
        auto gpu_linear = ops->PrepareQuantizedLinear(*q);
        ASSERT_TRUE(cpu_linear.ok()) << cpu_linear.status();
        ASSERT_TRUE(gpu_linear.ok()) << gpu_linear.status();
        for (int64_t samples : {int64_t(1), int64_t(3)}) {
          const int64_t rows = samples * c.rows_per_sample;
          std::vector<float> x = NormalValues(size_t(rows * c.in), 9, 1.0f, dtype);
          for (int64_t r = 0; r < rows; ++r) x[r * c.in + 3] = RoundTo(dtype, 30.0f);  // an outlier channel
          const std::vector<float> want = RunLinear(cpu, **cpu_linear, x, rows, samples, c.gelu);
          const std::vector<float> got = RunLinear(*ops, **gpu_linear, x, rows, samples, c.gelu);
          double bound = RoundingBound(dtype) + (fp8 ? double(c.in / 32) * std::ldexp(1.0, -13) : 0.0);
          // The GELU runs on the rounded linear output on CUDA (its slope is
          // at most 1.13) and is rounded once more; fp32 on the CPU.
          if (c.gelu) bound = 1.13 * bound + RoundingBound(dtype) + 1e-6;
          const double error = MaxRelativeError(want, got);
          std::printf("%s %s %s x%lld: error %.3g (bound %.3g)\n", c.name, WeightSchemeName(scheme), DtypeName(dtype),
                      static_cast<long long>(samples), error, bound);
          EXPECT_LE(error, bound) << c.name << " " << WeightSchemeName(scheme) << " " << DtypeName(dtype);
          if (samples == 3) {
            // The last sample alone: bitwise its rows of the batch.
            const std::vector<float> last(x.end() - c.rows_per_sample * c.in, x.end());
            const std::vector<float> alone = RunLinear(*ops, **gpu_linear, last, c.rows_per_sample, 1, c.gelu);
            const size_t offset = size_t(2 * c.rows_per_sample * c.out);
            for (size_t i = 0; i < alone.size(); ++i) {
              ASSERT_EQ(alone[i], got[offset + i]) << c.name << " " << WeightSchemeName(scheme) << " element " << i;
            }
          }
        }
      }
    }
  }
}

TEST(CudaDitW8A8Test, DemoForwardMatchesTheCpuOfTheSameSchemeThroughGraphs) {
  const int64_t pixels = 32 * 32;
  const std::vector<float> x = GaussianNoise(42, 4 * pixels);
  const std::vector<float> t = {999.0f, 500.0f, 20.0f, 250.0f};
  const std::vector<int32_t> y = {3, 10, 7, 0};
  // Max abs and relative L2 of eps against the CPU's fp32 run of the same
  // scheme. The difference is dominated by activation codes that flip where
  // the compute dtype's rounding moves a value across a quantization
  // boundary: each flip costs a whole step (1/127 of the row's largest
  // value in INT8, 1/16 to 1/8 of the value in e4m3), whatever the size of
  // the rounding that caused it. fp16's 3 extra bits make flips rarer, not
  // smaller, so it gets bf16's bounds (measured on an H100: bf16 0.094 /
  // 0.0093 INT8, 0.229 / 0.021 FP8; fp16 0.066 / 0.0065, 0.160 / 0.018).
  const std::pair<DType, std::pair<double, double>> bounds[] = {{DType::kBF16, {0.4, 6e-2}},
                                                                 {DType::kF16, {0.4, 6e-2}}};
  for (const char* scheme : {"w8a8-int8", "w8a8-fp8"}) {
    DitModelOptions options;
    options.weight_scheme = *ParseWeightSchemeRequest(scheme);
    CpuDitOps cpu;
    auto cpu_model = DitModel::Load(dit_test::kDemoDitDir, &cpu, options);
    ASSERT_TRUE(cpu_model.ok()) << cpu_model.status();
    const std::vector<float> want = ForwardEps(**cpu_model, x, t, y);
    for (const auto& [dtype, bound] : bounds) {
      auto ops = MakeCudaOps(dtype, /*graphs=*/true);
      if (ops == nullptr) GTEST_SKIP() << "no CUDA device";
      auto model = DitModel::Load(dit_test::kDemoDitDir, ops.get(), options);
      if (std::string(scheme) == "w8a8-fp8" && !HasFp8()) {
        EXPECT_EQ(model.status().code(), absl::StatusCode::kFailedPrecondition) << model.status();
        continue;
      }
      ASSERT_TRUE(model.ok()) << model.status();
      std::vector<float> first;
      for (int pass = 0; pass < 3; ++pass) {  // eager, captured, replayed
        const std::vector<float> eps = ForwardEps(**model, x, t, y);
        const auto [max_abs, relative] = dit_test::CompareEps(eps, want);
        std::printf("%s %s pass %d: eps vs the CPU's %s: max abs %.3g, relative L2 %.3g\n", scheme, DtypeName(dtype), pass,
                    scheme, max_abs, relative);
        EXPECT_LT(max_abs, bound.first) << scheme << " " << DtypeName(dtype);
        EXPECT_LT(relative, bound.second) << scheme << " " << DtypeName(dtype);
        if (pass == 0) first = eps;
        EXPECT_EQ(eps, first) << scheme << " " << DtypeName(dtype) << ": pass " << pass << " differs from the eager pass";
      }
      const auto stats = ops->graph_stats();
      EXPECT_EQ(stats.captured, 1);
      EXPECT_EQ(stats.replayed, 1);
      // Sample 2 alone (a new batch size: eager): bitwise its rows of the batch.
      const std::vector<float> x2(x.begin() + 2 * pixels, x.begin() + 3 * pixels);
      const std::vector<float> alone = ForwardEps(**model, x2, {t[2]}, {y[2]});
      for (int64_t i = 0; i < pixels; ++i) {
        ASSERT_EQ(alone[i], first[2 * pixels + i]) << scheme << " " << DtypeName(dtype) << " element " << i;
      }
    }
  }
}

// The norm kernels that quantize the W8A8 layers' inputs as they write them
// (DitModelOptions::fuse_activation_quantization) give those layers the codes
// and scales they would have made themselves: eps bitwise equal to the
// unfused model's on one ops (eager, the heuristic's algorithms, so both
// models' layers sum in the same order), in bf16 and fp16.
TEST(CudaDitW8A8Test, ActivationsQuantizedByTheirProducersGiveTheSameEps) {
  const int64_t pixels = 32 * 32;
  const std::vector<float> x = GaussianNoise(8, 3 * pixels);
  const std::vector<float> t = {999.0f, 300.0f, 1.0f};
  const std::vector<int32_t> y = {0, 10, 9};
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    CudaDitOpsOptions ops_options;
    ops_options.compute_dtype = dtype;
    ops_options.cuda_graphs = false;
    ops_options.gemm_autotune = false;
    auto ops = CudaDitOps::Create(ops_options);
    if (!ops.ok()) GTEST_SKIP() << "no CUDA device";
    for (const char* scheme : {"w8a8-int8", "w8a8-fp8"}) {
      if (std::string(scheme) == "w8a8-fp8" && !HasFp8()) continue;
      std::vector<float> eps[2];
      for (int fused = 0; fused < 2; ++fused) {
        DitModelOptions options;
        options.weight_scheme = *ParseWeightSchemeRequest(scheme);
        options.fuse_activation_quantization = fused == 1;
        auto model = DitModel::Load(dit_test::kDemoDitDir, ops->get(), options);
        ASSERT_TRUE(model.ok()) << model.status();
        eps[fused] = ForwardEps(**model, x, t, y);
      }
      EXPECT_EQ(eps[1], eps[0]) << scheme << " " << DtypeName(dtype);
    }
  }
}

}  // namespace
}  // namespace tern::runtime
