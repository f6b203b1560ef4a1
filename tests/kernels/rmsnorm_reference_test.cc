#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/norm/rmsnorm.h"

namespace tern::kernels {
namespace {

TEST(RmsNormReferenceTest, MatchesHandComputedRow) {
  // x = [3, 4]: mean square 12.5, rms = sqrt(12.5 + eps).
  const std::vector<float> x = {3.0f, 4.0f};
  const std::vector<float> w = {1.0f, 2.0f};
  std::vector<float> y(2);
  RmsNormParams p{1, 2, 2, 2, 0.0f};
  RmsNormReference(p, x.data(), w.data(), y.data());
  const float rms = std::sqrt(12.5f);
  EXPECT_NEAR(y[0], 3.0f / rms, 1e-6f);
  EXPECT_NEAR(y[1], 8.0f / rms, 1e-6f);
}

TEST(RmsNormReferenceTest, HonoursRowStridesAndEmptyInput) {
  const std::vector<float> x = {1, 1, 99, 2, 2, 99};
  const std::vector<float> w = {1, 1};
  std::vector<float> y(4, -1.0f);
  RmsNormParams p{2, 2, 3, 2, 0.0f};
  RmsNormReference(p, x.data(), w.data(), y.data());
  for (float v : y) EXPECT_NEAR(v, 1.0f, 1e-6f);  // each row is constant, so normalizes to 1
  p.num_tokens = 0;
  std::vector<float> untouched(4, -1.0f);
  RmsNormReference(p, x.data(), w.data(), untouched.data());
  for (float v : untouched) EXPECT_EQ(v, -1.0f);
}

}  // namespace
}  // namespace tern::kernels
