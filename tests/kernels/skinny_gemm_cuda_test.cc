// The decode-sized GEMM against its fp64-accumulating reference: every row
// count it takes, odd and large feature counts, strided rows, both 16-bit
// types, and the shapes it must decline.
#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "kernels/gemm/skinny_gemm.h"
#include "tests/kernels/cuda_test_util.h"

namespace tern::kernels {
namespace {

using testing::DeviceArray;

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> out(n);
  for (auto& x : out) x = normal(rng);
  return out;
}

class SkinnyGemmCudaTest : public ::testing::TestWithParam<ScalarType> {
 protected:
  void SetUp() override {
    if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(SkinnyGemmCudaTest, MatchesReference) {
  const ScalarType type = GetParam();
  struct Shape {
    int64_t n, k;
  };
  for (const Shape shape : {Shape{1, 8}, Shape{7, 24}, Shape{129, 1000}, Shape{4096, 4096}, Shape{333, 11008}}) {
    for (int64_t rows = 1; rows <= kSkinnyGemmMaxRows; ++rows) {
      const int64_t x_stride = shape.k + 16, y_stride = shape.n + 3;  // strided rows
      auto x = Random(size_t(rows * x_stride), uint32_t(rows * 31 + shape.n));
      auto w = Random(size_t(shape.n * shape.k), uint32_t(shape.k));
      for (auto& v : w) v /= std::sqrt(float(shape.k));
      DeviceArray dx(type, x.size()), dw(type, w.size()), dy(type, size_t(rows * y_stride));
      dx.Upload(x);
      dw.Upload(w);
      std::vector<float> zeros(size_t(rows * y_stride), 0.0f);
      dy.Upload(zeros);
      const SkinnyGemmParams p{rows, shape.n, shape.k, x_stride, y_stride};
      ASSERT_TRUE(SkinnyGemmSupported(type, p, dx.data(), dw.data()));
      ASSERT_EQ(LaunchSkinnyGemm(type, p, dx.data(), dw.data(), dy.data(), nullptr), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      std::vector<float> want(size_t(rows * y_stride), 0.0f);
      SkinnyGemmReference(p, x.data(), w.data(), want.data());
      EXPECT_LT(testing::RelativeError(dy.Download(), want), testing::Tolerance(type))
          << rows << " rows, n " << shape.n << ", k " << shape.k;
    }
  }
}

TEST_P(SkinnyGemmCudaTest, DeclinesWhatItCannotRun) {
  const ScalarType type = GetParam();
  DeviceArray buffer(type, 4096);
  const void* base = buffer.data();
  const SkinnyGemmParams ok{1, 8, 64, 64, 8};
  EXPECT_TRUE(SkinnyGemmSupported(type, ok, base, base));
  SkinnyGemmParams bad = ok;
  bad.rows = kSkinnyGemmMaxRows + 1;
  EXPECT_FALSE(SkinnyGemmSupported(type, bad, base, base));
  bad = ok;
  bad.k = 60;  // not a multiple of 8
  EXPECT_FALSE(SkinnyGemmSupported(type, bad, base, base));
  bad = ok;
  bad.x_row_stride = 68;
  EXPECT_FALSE(SkinnyGemmSupported(type, bad, base, base));
  const void* misaligned = static_cast<const char*>(base) + 2;
  EXPECT_FALSE(SkinnyGemmSupported(type, ok, misaligned, base));
  EXPECT_EQ(LaunchSkinnyGemm(type, bad, base, base, buffer.data(), nullptr), cudaErrorNotSupported);
  const SkinnyGemmParams empty{0, 8, 64, 64, 8};
  EXPECT_EQ(LaunchSkinnyGemm(type, empty, nullptr, nullptr, nullptr, nullptr), cudaSuccess);
  EXPECT_FALSE(SkinnyGemmSupported(ScalarType::kF32, ok, base, base));
}

INSTANTIATE_TEST_SUITE_P(Types, SkinnyGemmCudaTest, ::testing::Values(ScalarType::kF16, ScalarType::kBF16),
                         [](const auto& info) { return info.param == ScalarType::kF16 ? "f16" : "bf16"; });

}  // namespace
}  // namespace tern::kernels
