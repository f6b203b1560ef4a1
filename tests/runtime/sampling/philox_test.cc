#include "runtime/sampling/philox.h"

#include <set>

#include "gtest/gtest.h"

namespace tern::runtime {
namespace {

// Known-answer vectors of Random123 (kat_vectors, philox4x32 10).
TEST(PhiloxTest, MatchesRandom123KnownAnswers) {
  EXPECT_EQ(Philox4x32_10({0, 0, 0, 0}, {0, 0}),
            (PhiloxCounter{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  EXPECT_EQ(Philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                          {0xffffffffu, 0xffffffffu}),
            (PhiloxCounter{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
  EXPECT_EQ(Philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                          {0xa4093822u, 0x299f31d0u}),
            (PhiloxCounter{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
}

TEST(PhiloxTest, UniformIsTheTop53BitsOfTheFirstTwoWords) {
  // seed 0, stream 0, position 0 is the all-zero block above.
  const uint64_t bits = (uint64_t{0x6627e8d5u} << 32) | 0xe169c58du;
  EXPECT_EQ(PhiloxUniform(0, 0, 0), static_cast<double>(bits >> 11) * 0x1.0p-53);
}

TEST(PhiloxTest, UniformDependsOnSeedStreamAndPosition) {
  const double base = PhiloxUniform(42, 0, 7);
  EXPECT_EQ(base, PhiloxUniform(42, 0, 7));
  EXPECT_NE(base, PhiloxUniform(43, 0, 7));
  EXPECT_NE(base, PhiloxUniform(42, 1, 7));
  EXPECT_NE(base, PhiloxUniform(42, 0, 8));
  // The high halves of seed and position matter too.
  EXPECT_NE(base, PhiloxUniform(42 + (uint64_t{1} << 32), 0, 7));
  EXPECT_NE(base, PhiloxUniform(42, 0, 7 + (uint64_t{1} << 32)));
}

TEST(PhiloxTest, UniformIsInUnitIntervalWithPlausibleMoments) {
  constexpr int kDraws = 200000;
  double sum = 0.0;
  double sum_sq = 0.0;
  int buckets[10] = {};
  for (int i = 0; i < kDraws; ++i) {
    const double u = PhiloxUniform(1234, 3, i);
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    sum_sq += u * u;
    ++buckets[static_cast<int>(u * 10)];
  }
  EXPECT_NEAR(sum / kDraws, 0.5, 0.005);
  EXPECT_NEAR(sum_sq / kDraws, 1.0 / 3.0, 0.005);
  for (int count : buckets) EXPECT_NEAR(count, kDraws / 10, 600);  // ~4.5 sigma
}

}  // namespace
}  // namespace tern::runtime
