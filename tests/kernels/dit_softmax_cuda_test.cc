// The row softmax of attention as two GEMMs (kernels/dit/dit_softmax.h)
// against DitRowSoftmaxReference: rows shorter than a block, rows that fit
// the registers, a row past them (read twice), padded strides, one large
// score per row, and the refused shapes. Label gpu: skips without a GPU.
#include "kernels/dit/dit_softmax.h"

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/kernels/cuda_test_util.h"

namespace tern::kernels {
namespace {

using testing::DeviceArray;
using testing::DeviceVector;

class DitSoftmaxCudaTest : public ::testing::TestWithParam<ScalarType> {
 protected:
  void SetUp() override {
    if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(DitSoftmaxCudaTest, MatchesTheReference) {
  const ScalarType type = GetParam();
  struct Case {
    int64_t rows, cols, s_stride, p_stride;
  };
  // A 16-bit p rounds each probability to 8 or 11 bits; fp32 differs from
  // the reference only by the order of the sum and by expf.
  const double tolerance = type == ScalarType::kF32 ? 2e-6 : type == ScalarType::kF16 ? 1e-3 : 8e-3;
  for (const Case c : {Case{3, 100, 100, 104}, Case{5, 4096, 4100, 4096}, Case{2, 5000, 5000, 5008}}) {
    std::mt19937 rng(uint32_t(c.cols));
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::vector<float> s(size_t(c.rows * c.s_stride), NAN);  // padding is never read
    for (int64_t r = 0; r < c.rows; ++r) {
      for (int64_t i = 0; i < c.cols; ++i) s[r * c.s_stride + i] = normal(rng);
      s[r * c.s_stride + (r * 37) % c.cols] = 40.0f;  // one dominant key
    }
    DeviceVector<float> ds(s);
    DeviceArray dp(type, size_t(c.rows * c.p_stride));
    std::vector<float> fill(size_t(c.rows * c.p_stride), -7.0f);
    dp.Upload(fill);
    ASSERT_EQ(LaunchDitRowSoftmax(type, c.rows, c.cols, ds.data(), c.s_stride, dp.data(), c.p_stride, nullptr),
              cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<float> want(size_t(c.rows * c.cols));
    DitRowSoftmaxReference(c.rows, c.cols, s.data(), c.s_stride, want.data(), c.cols);
    const std::vector<float> got = dp.Download();
    const std::string what = absl::StrCat(testing::Name(type), " ", c.rows, "x", c.cols);
    for (int64_t r = 0; r < c.rows; ++r) {
      double worst = 0.0, sum = 0.0;
      for (int64_t i = 0; i < c.cols; ++i) {
        // Relative above 1e-4, absolute (scaled) below: fp16 keeps tiny
        // probabilities as subnormals 6e-8 apart.
        const double w = want[r * c.cols + i], g = got[r * c.p_stride + i];
        worst = std::max(worst, std::fabs(g - w) / std::max(w, 1e-4));
        sum += g;
      }
      EXPECT_LE(worst, tolerance) << what << " row " << r;
      EXPECT_NEAR(sum, 1.0, 4.0 * tolerance + c.cols * 1e-7) << what << " row " << r;
      for (int64_t i = c.cols; i < c.p_stride; ++i) ASSERT_EQ(got[r * c.p_stride + i], -7.0f) << what << ": padding";
    }
  }
}

TEST_P(DitSoftmaxCudaTest, RefusesBadShapes) {
  const ScalarType type = GetParam();
  DeviceVector<float> s(std::vector<float>(16, 0.0f));
  DeviceArray p(type, 16);
  EXPECT_EQ(LaunchDitRowSoftmax(type, 1, 0, s.data(), 4, p.data(), 4, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchDitRowSoftmax(type, -1, 4, s.data(), 4, p.data(), 4, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchDitRowSoftmax(type, 2, 8, s.data(), 4, p.data(), 8, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchDitRowSoftmax(type, 2, 8, s.data(), 8, p.data(), 4, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(LaunchDitRowSoftmax(type, 0, 8, s.data(), 8, p.data(), 8, nullptr), cudaSuccess);
}

INSTANTIATE_TEST_SUITE_P(Types, DitSoftmaxCudaTest,
                         ::testing::Values(ScalarType::kF32, ScalarType::kF16, ScalarType::kBF16),
                         [](const ::testing::TestParamInfo<ScalarType>& info) {
                           return std::string(testing::Name(info.param));
                         });

}  // namespace
}  // namespace tern::kernels
