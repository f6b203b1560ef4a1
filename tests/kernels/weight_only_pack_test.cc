// The weight-only repacking on the host: every code, scale and zero comes
// back from the packed layout where it was, the fragment positions cover
// each (row, column) of a chunk exactly once, padding dequantizes to finite
// values (rows to 0), scales stay fp16 only when exact, and what the
// kernels cannot run is refused with a message.
#include "kernels/gemm/weight_only_pack.h"

#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/gemm/quant_gemm.h"

namespace tern::kernels {
namespace {

struct Layer {
  WeightOnlyLayout layout;
  std::vector<uint8_t> codes;           // row-major, packed two to a byte for 4 bits
  std::vector<uint8_t> unpacked_codes;  // one per byte
  std::vector<float> scales;
  std::vector<uint8_t> zeros;
};

Layer RandomLayer(int32_t bits, int64_t n, int64_t k, int64_t group_size, bool symmetric, bool half_scales,
                  uint32_t seed) {
  std::mt19937 rng(seed);
  Layer l;
  l.layout = {bits, n, k, group_size, k / group_size};
  const int32_t levels = 1 << bits;
  l.unpacked_codes.resize(size_t(n * k));
  for (auto& c : l.unpacked_codes) c = uint8_t(rng() % levels);
  if (bits == 8) {
    l.codes = l.unpacked_codes;
  } else {
    l.codes.assign(size_t(n * k / 2), 0);
    for (int64_t i = 0; i < n * k; ++i) l.codes[i / 2] |= uint8_t(l.unpacked_codes[i] << (4 * (i % 2)));
  }
  const int64_t groups = k / group_size;
  l.scales.resize(size_t(n * groups));
  l.zeros.resize(size_t(n * groups));
  std::uniform_real_distribution<float> scale(1e-3f, 1e-1f);
  for (auto& s : l.scales) {
    // Seven significant bits are an exact fp16; uniform floats are not.
    s = half_scales ? std::ldexp(float(64 + rng() % 64), -int(10 + rng() % 4)) : scale(rng);
  }
  for (auto& z : l.zeros) z = symmetric ? uint8_t(levels / 2) : uint8_t(rng() % (levels + 1));
  return l;
}

TEST(WeightOnlyPackTest, FragmentPositionsCoverEachChunkOnce) {
  for (int32_t bits : {4, 8}) {
    const int32_t per_lane = bits == 4 ? 32 : 16;
    const int32_t cols = bits == 4 ? 64 : 32;
    std::set<std::pair<int32_t, int32_t>> seen;
    for (int32_t lane = 0; lane < 32; ++lane) {
      for (int32_t index = 0; index < per_lane; ++index) {
        const FragmentPosition p = WeightOnlyFragmentPosition(bits, lane, index);
        ASSERT_GE(p.row, 0);
        ASSERT_LT(p.row, 16);
        ASSERT_GE(p.col, 0);
        ASSERT_LT(p.col, cols);
        EXPECT_TRUE(seen.insert({p.row, p.col}).second) << bits << " bits: lane " << lane << " index " << index;
      }
    }
    EXPECT_EQ(seen.size(), size_t(16 * cols)) << bits << " bits";
  }
  // The m16n8k16 A fragment: lane 5 (g 1, t 1), register 0 is row 1, columns 2 and 3.
  EXPECT_EQ(WeightOnlyFragmentPosition(4, 5, 0).row, 1);
  EXPECT_EQ(WeightOnlyFragmentPosition(4, 5, 0).col, 2);
  EXPECT_EQ(WeightOnlyFragmentPosition(4, 5, 4).col, 3);   // nibble 4: the pair's high half
  EXPECT_EQ(WeightOnlyFragmentPosition(4, 5, 1).row, 9);   // register 1: row g + 8
  EXPECT_EQ(WeightOnlyFragmentPosition(4, 5, 2).col, 10);  // register 2: columns + 8
  EXPECT_EQ(WeightOnlyFragmentPosition(4, 5, 8).col, 18);  // word 1: the next k16 step
  EXPECT_EQ(WeightOnlyFragmentPosition(8, 5, 2).col, 3);   // byte 2: register 0's high half
  EXPECT_EQ(WeightOnlyFragmentPosition(8, 5, 1).row, 9);   // byte 1: register 1
  EXPECT_EQ(WeightOnlyFragmentPosition(8, 5, 4).col, 10);  // word 1: registers 2 and 3
}

TEST(WeightOnlyPackTest, RoundTrips) {
  struct Case {
    int32_t bits;
    int64_t n, k, group;
    bool symmetric, half_scales;
  };
  for (const Case c :
       {Case{4, 16, 64, 32, true, true}, Case{4, 37, 96, 32, false, true}, Case{4, 5, 200, 200, true, false},
        Case{8, 33, 48, 16, false, false}, Case{8, 16, 1000, 1000, true, true}, Case{4, 100, 384, 128, false, false},
        Case{8, 7, 256, 64, true, true}}) {
    SCOPED_TRACE(::testing::Message() << c.bits << " bits, n " << c.n << ", k " << c.k << ", group " << c.group);
    Layer l = RandomLayer(c.bits, c.n, c.k, c.group, c.symmetric, c.half_scales, uint32_t(c.n * 7 + c.k));
    PackedWeightOnly packed;
    ASSERT_EQ(PackWeightOnly(l.layout, l.codes.data(), l.scales.data(), l.zeros.data(), &packed), "");
    EXPECT_EQ(packed.codes.size(), l.layout.code_bytes());
    EXPECT_EQ(packed.zeros.empty(), c.symmetric);
    EXPECT_EQ(packed.half_scales.empty(), !c.half_scales);
    std::vector<uint8_t> codes, zeros;
    std::vector<float> scales;
    UnpackWeightOnly(packed, &codes, &scales, &zeros);
    EXPECT_EQ(codes, l.unpacked_codes);
    EXPECT_EQ(scales, l.scales);
    EXPECT_EQ(zeros, l.zeros);
  }
}

// Padded rows have scale 0; padded columns hold a code equal to the row's
// zero when it fits (so both dequantize to 0 there).
TEST(WeightOnlyPackTest, PaddingDequantizesToZero) {
  Layer l = RandomLayer(4, 18, 96, 32, false, true, 3);
  for (auto& z : l.zeros) z = std::min<uint8_t>(z, 15);
  PackedWeightOnly packed;
  ASSERT_EQ(PackWeightOnly(l.layout, l.codes.data(), l.scales.data(), l.zeros.data(), &packed), "");
  const int64_t chunks = l.layout.k_chunks();
  for (int64_t tile = 0; tile < l.layout.n_tiles(); ++tile) {
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      for (int32_t lane = 0; lane < 32; ++lane) {
        for (int32_t index = 0; index < 32; ++index) {
          const FragmentPosition p = WeightOnlyFragmentPosition(4, lane, index);
          const int64_t row = tile * 16 + p.row, col = chunk * 64 + p.col;
          if (row >= l.layout.n || col < l.layout.k) continue;
          const uint8_t byte = packed.codes[size_t((tile * chunks + chunk) * 512 + lane * 16 + index / 2)];
          EXPECT_EQ((byte >> (4 * (index % 2))) & 0xf, l.zeros[row * 3 + 2]) << "row " << row << " col " << col;
        }
      }
    }
    for (int64_t r = 0; r < 16; ++r) {
      if (tile * 16 + r < l.layout.n) continue;
      for (int64_t group = 0; group < 3; ++group) {
        EXPECT_EQ(packed.half_scales[size_t((tile * 3 + group) * 16 + r)], 0) << "padded row " << tile * 16 + r;
      }
    }
  }
}

TEST(WeightOnlyPackTest, RefusesWhatTheKernelsCannotRun) {
  Layer l = RandomLayer(4, 16, 96, 32, true, true, 1);
  PackedWeightOnly packed;
  WeightOnlyLayout bad = l.layout;
  bad.bits = 3;
  EXPECT_NE(PackWeightOnly(bad, l.codes.data(), l.scales.data(), l.zeros.data(), &packed).find("4 or 8 bits"),
            std::string::npos);
  bad = l.layout;
  bad.group_size = 24;  // 4 groups of 24: not a multiple of 16
  bad.groups = 4;
  EXPECT_NE(PackWeightOnly(bad, l.codes.data(), l.scales.data(), l.zeros.data(), &packed).find("multiple of 16"),
            std::string::npos);
  bad = l.layout;
  bad.groups = 2;  // 2 x 32 != 96
  EXPECT_NE(PackWeightOnly(bad, l.codes.data(), l.scales.data(), l.zeros.data(), &packed).find("does not cover"),
            std::string::npos);
}

}  // namespace
}  // namespace tern::kernels
