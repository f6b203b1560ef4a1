// GPU RMSNorm against the CPU reference on fresh random inputs. Skips when
// no CUDA device is visible.
#include <cuda_runtime.h>

#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/norm/rmsnorm.h"

namespace tern::kernels {
namespace {

bool HaveGpu() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return count > 0;
}

class RmsNormCudaTest : public ::testing::TestWithParam<std::pair<int, int>> {};

TEST_P(RmsNormCudaTest, MatchesReference) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  const auto [num_tokens, hidden] = GetParam();
  std::mt19937 rng(1234 + num_tokens * 7919 + hidden);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> x(size_t(num_tokens) * hidden), w(hidden), expected(x.size()), got(x.size());
  for (auto& v : x) v = normal(rng);
  for (auto& v : w) v = normal(rng);
  const RmsNormParams params{num_tokens, hidden, hidden, hidden, 1e-5f};
  RmsNormReference(params, x.data(), w.data(), expected.data());

  float *dx = nullptr, *dw = nullptr, *dy = nullptr;
  ASSERT_EQ(cudaMalloc(&dx, std::max<size_t>(1, x.size()) * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dw, w.size() * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dy, std::max<size_t>(1, x.size()) * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dx, x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dw, w.data(), w.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(LaunchRmsNormF32(params, dx, dw, dy, nullptr), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(got.data(), dy, got.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(dx);
  cudaFree(dw);
  cudaFree(dy);
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], expected[i], 1e-4f * (1.0f + std::abs(expected[i]))) << "at " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, RmsNormCudaTest,
                         ::testing::Values(std::pair{0, 64}, std::pair{1, 1}, std::pair{1, 4096},
                                           std::pair{7, 257}, std::pair{33, 8192}, std::pair{128, 5120}));

TEST(RmsNormCudaLaunchTest, RejectsBadShapes) {
  if (!HaveGpu()) GTEST_SKIP() << "no CUDA device";
  const RmsNormParams bad{4, 0, 0, 0, 1e-5f};
  EXPECT_EQ(LaunchRmsNormF32(bad, nullptr, nullptr, nullptr, nullptr), cudaErrorInvalidValue);
}

}  // namespace
}  // namespace tern::kernels
