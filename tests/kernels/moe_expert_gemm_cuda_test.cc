// The MoE expert GEMM (kernels/moe/moe_expert_gemm.h) against its CPU
// reference: idle experts (no weight read, no row written), experts of 1, 8,
// 9, 17 and 40 rows (several passes of 8), one expert holding every row,
// fp16 and bf16, strided rows, Mixtral-like and odd shapes; and the calls it
// must decline.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/moe/moe_expert_gemm.h"
#include "tests/kernels/cuda_test_util.h"

namespace tern::kernels {
namespace {

using testing::DeviceArray;
using testing::DeviceVector;

class MoeExpertGemmCudaTest : public ::testing::TestWithParam<ScalarType> {
 protected:
  void SetUp() override {
    if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  }
};

std::vector<float> Normal(size_t count, float sigma, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> out(count);
  for (auto& v : out) v = normal(rng);
  return out;
}

TEST_P(MoeExpertGemmCudaTest, MatchesReference) {
  const ScalarType type = GetParam();
  struct Case {
    std::vector<int32_t> rows_per_expert;
    int64_t n, k;
  };
  const Case cases[] = {
      {{0, 1, 0, 1, 0, 0, 0, 0}, 256, 512},          // batch 1, top 2: two experts of one row
      {{3, 0, 8, 9, 1, 17, 0, 2}, 200, 136},         // passes of 8, idle experts, n not a multiple of 8 warps
      {{40, 0, 0, 0}, 64, 1024},                     // one expert holds every row: five passes
      {{2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2}, 96, 4096},  // 16 experts
      {{5}, 33, 8},                                   // one expert, k of one chunk
  };
  uint32_t seed = 7;
  for (const Case& c : cases) {
    std::mt19937 rng(seed++);
    const int32_t experts = int32_t(c.rows_per_expert.size());
    std::vector<int32_t> offsets(size_t(experts) + 1, 0);
    std::partial_sum(c.rows_per_expert.begin(), c.rows_per_expert.end(), offsets.begin() + 1);
    const int64_t rows = offsets.back();
    const int64_t x_stride = c.k + 8, y_stride = c.n + 5;
    std::vector<float> x = Normal(size_t(rows * x_stride), 1.0f, rng);
    std::vector<std::vector<float>> weights(static_cast<size_t>(experts));
    std::vector<std::unique_ptr<DeviceArray>> d_weights;
    std::vector<const void*> pointers;
    for (auto& w : weights) {
      w = Normal(size_t(c.n * c.k), 1.0f / std::sqrt(float(c.k)), rng);
      d_weights.push_back(std::make_unique<DeviceArray>(type, w.size()));
      d_weights.back()->Upload(w);  // rounds the host copy to the type
      pointers.push_back(d_weights.back()->data());
    }
    DeviceArray d_x(type, x.size());
    d_x.Upload(x);
    std::vector<float> y_init(size_t(std::max<int64_t>(rows, 1) * y_stride), 777.0f);
    DeviceArray d_y(type, y_init.size());
    d_y.Upload(y_init);
    DeviceVector<int32_t> d_offsets{offsets};
    void** d_table = nullptr;
    ASSERT_EQ(cudaMalloc(&d_table, pointers.size() * sizeof(void*)), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(d_table, pointers.data(), pointers.size() * sizeof(void*), cudaMemcpyHostToDevice),
              cudaSuccess);
    const MoeExpertGemmParams p{rows, experts, c.n, c.k, x_stride, y_stride};
    const std::string what = std::to_string(experts) + " experts, " + std::to_string(rows) + " rows, n " +
                             std::to_string(c.n) + ", k " + std::to_string(c.k);
    ASSERT_TRUE(MoeExpertGemmSupported(type, p, d_x.data())) << what;
    ASSERT_EQ(LaunchMoeExpertGemm(type, p, d_x.data(), d_table, d_offsets.data(), d_y.data(), nullptr), cudaSuccess)
        << what;
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
    cudaFree(d_table);

    std::vector<const float*> host_weights;
    for (const auto& w : weights) host_weights.push_back(w.data());
    std::vector<float> want = y_init;
    for (auto& v : want) v = testing::Round(type, v);
    MoeExpertGemmReference(p, offsets.data(), x.data(), host_weights.data(), want.data());
    const std::vector<float> got = d_y.Download();
    const testing::OutputRegion region = testing::SplitOutputRegion(got, want, rows, c.n, y_stride);
    ASSERT_EQ(region.padding_written, "") << what;
    EXPECT_LT(testing::RelativeError(region.got, region.want), testing::Tolerance(type)) << what;
    // Elementwise too: one wrong row among right ones hardly moves the normwise error.
    for (size_t i = 0; i < region.got.size(); ++i) {
      const float bound = 4 * testing::Tolerance(type) * (1.0f + std::abs(region.want[i]));
      ASSERT_NEAR(region.got[i], region.want[i], bound)
          << what << ": row " << i / size_t(c.n) << ", feature " << i % size_t(c.n);
    }
  }
}

TEST_P(MoeExpertGemmCudaTest, DeclinesWhatItCannotRun) {
  const ScalarType type = GetParam();
  DeviceArray x(type, 64);
  const MoeExpertGemmParams ok{2, 2, 8, 16, 16, 8};
  EXPECT_TRUE(MoeExpertGemmSupported(type, ok, x.data()));
  EXPECT_FALSE(MoeExpertGemmSupported(ScalarType::kF32, ok, x.data()));
  MoeExpertGemmParams bad = ok;
  bad.k = 12;  // not a multiple of 8
  bad.x_row_stride = 16;
  EXPECT_FALSE(MoeExpertGemmSupported(type, bad, x.data()));
  bad = ok;
  bad.x_row_stride = 20;
  EXPECT_FALSE(MoeExpertGemmSupported(type, bad, x.data()));
  bad = ok;
  bad.y_row_stride = 4;
  EXPECT_FALSE(MoeExpertGemmSupported(type, bad, x.data()));
  bad = ok;
  bad.num_experts = 0;
  EXPECT_FALSE(MoeExpertGemmSupported(type, bad, x.data()));
  EXPECT_FALSE(MoeExpertGemmSupported(type, ok, static_cast<const char*>(x.data()) + 2));  // x misaligned
  EXPECT_EQ(LaunchMoeExpertGemm(type, bad, x.data(), nullptr, nullptr, nullptr, nullptr), cudaErrorNotSupported);
  MoeExpertGemmParams none = ok;
  none.rows = 0;
  EXPECT_EQ(LaunchMoeExpertGemm(type, none, x.data(), nullptr, nullptr, nullptr, nullptr), cudaSuccess);
}

INSTANTIATE_TEST_SUITE_P(Types, MoeExpertGemmCudaTest, ::testing::Values(ScalarType::kF16, ScalarType::kBF16),
                         [](const auto& info) { return info.param == ScalarType::kF16 ? "fp16" : "bf16"; });

}  // namespace
}  // namespace tern::kernels
