// Helpers shared by the CUDA DiT tests (tests/runtime/dit/cuda_*_test.cc):
// CUDA ops or a skip without a GPU, inputs rounded to the compute dtype so the
// CPU and CUDA sides see the same values, the per-dtype tolerances, and the
// error report of one output against its CPU reference.
//
// Tolerances: an op's error is max |gpu - cpu| / max |cpu| over its output
// (printed with the worst element). fp32 matches to 2e-5 (accumulation order
// only; attention and GELU use other exponentials); fp16 and bf16 round
// inputs and outputs to 11 and 8 significant bits: 4e-3 and 2e-2, as
// tests/kernels/cuda_test_util.h states for every kernel.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/dit/cuda_dit_ops.h"
#include "runtime/dit/dit_model.h"
#include "runtime/model/dtype.h"
#include "runtime/model/safetensors.h"
#include "tests/runtime/dit/fp32_view.h"

namespace tern::runtime::dit_test {

// CUDA ops of `dtype`, or null where no device is (the caller skips).
inline std::unique_ptr<CudaDitOps> MakeCudaOps(DType dtype, bool graphs = false) {
  CudaDitOpsOptions options;
  options.compute_dtype = dtype;
  options.cuda_graphs = graphs;
  auto ops = CudaDitOps::Create(options);
  if (!ops.ok()) {
    EXPECT_EQ(ops.status().code(), absl::StatusCode::kFailedPrecondition) << ops.status();
    return nullptr;
  }
  return std::move(*ops);
}

inline const char* DtypeName(DType d) { return d == DType::kF32 ? "f32" : d == DType::kF16 ? "f16" : "bf16"; }

// The largest relative error an op may show in `d` against the CPU's fp32.
inline double OpTolerance(DType d) { return d == DType::kF32 ? 2e-5 : d == DType::kF16 ? 4e-3 : 2e-2; }

inline float RoundTo(DType d, float v) {
  if (d == DType::kBF16) return BFloat16ToFloat(FloatToBFloat16(v));
  if (d == DType::kF16) return HalfToFloat(FloatToHalf(v));
  return v;
}

// Uniform values in [lo, hi] from `seed`, rounded to `d`.
inline std::vector<float> RandomValues(size_t n, uint32_t seed, DType d, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = RoundTo(d, dist(gen));
  return v;
}

// max |got - want| / max |want|; infinite for a NaN or outputs of two sizes.
inline double MaxRelativeError(const std::vector<float>& want, const std::vector<float>& got) {
  if (want.size() != got.size()) return INFINITY;
  double scale = 1e-30, worst = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    scale = std::max(scale, double(std::abs(want[i])));
    const double d = std::abs(double(got[i]) - double(want[i]));
    if (!(d <= worst)) worst = std::isnan(d) ? INFINITY : d;
  }
  return worst / scale;
}

// Expects max |got - want| / max |want| <= tolerance, printing the error and
// the worst element's row and column (rows of `cols`).
inline void ExpectClose(const std::string& what, const std::vector<float>& want, const std::vector<float>& got,
                        int64_t cols, double tolerance) {
  ASSERT_EQ(want.size(), got.size()) << what;
  double scale = 1e-30, worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    scale = std::max(scale, double(std::abs(want[i])));
    const double d = std::abs(double(got[i]) - double(want[i]));
    if (!(d <= worst)) {  // NaN lands here too
      worst = std::isnan(d) ? INFINITY : d;
      at = i;
    }
  }
  const double error = worst / scale;
  std::printf("%-40s max error %.3g of max |cpu| %.3g (%.3g relative), worst at row %zu col %zu: cpu %.6g cuda %.6g\n",
              what.c_str(), worst, scale, error, at / size_t(cols), at % size_t(cols), want[at], got[at]);
  EXPECT_LE(error, tolerance) << what << ": row " << at / size_t(cols) << " col " << at % size_t(cols) << " cpu "
                              << want[at] << " cuda " << got[at];
}

// eps of `model` for the samples (x, t, y), exact attention; a failed
// forward fails the test.
inline std::vector<float> ForwardEps(DitModel& model, const std::vector<float>& x, const std::vector<float>& t,
                                     const std::vector<int32_t>& y) {
  std::vector<float> eps(x.size());
  const absl::Status status = model.Forward({x, t, y, {}}, absl::MakeSpan(eps));
  EXPECT_TRUE(status.ok()) << status;
  return eps;
}

}  // namespace tern::runtime::dit_test

#define TERN_SKIP_WITHOUT_GPU(ops) \
  if ((ops) == nullptr) GTEST_SKIP() << "no CUDA device"
