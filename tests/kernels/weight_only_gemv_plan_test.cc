// The host side of the weight-only GEMV (weight_only_gemv.h): the shared
// order of x puts each B-fragment pair where the kernel's lane reads it and
// covers a chunk's columns once; launch plans on Llama-2-7B shapes (slices,
// blocks, x in shared memory or not, bank-friendly row strides, staged
// bytes within the budget); plans refused where the kernel cannot run; and
// the backend's choice between the GEMV, the tensor-core GEMM and
// dequantize + dense GEMM.
#include "kernels/gemm/weight_only_gemv.h"

#include <random>
#include <set>
#include <string>

#include "gtest/gtest.h"

namespace tern::kernels {
namespace {

WeightOnlyLayout Layout(int32_t bits, int64_t n, int64_t k, int64_t group) {
  return WeightOnlyLayout{bits, n, k, group, k / group};
}

std::string Describe(const WeightOnlyLayout& l, int64_t rows) {
  return std::to_string(l.bits) + " bits [" + std::to_string(l.n) + ", " + std::to_string(l.k) + "] group " +
         std::to_string(l.group_size) + ", rows " + std::to_string(rows);
}

// The MMA multiplies A's column 2 t + 8 q + e of step j with B register q,
// element e; the kernel's lane t reads B register q of step j as 32-bit word
// 2 j + q of its 4 * steps elements, so that column must sit at element
// t * 4 * steps + 4 j + 2 q + e.
TEST(WeightOnlyGemvPlanTest, SharedSlotsHoldEachLanesBFragments) {
  for (int32_t bits : {4, 8}) {
    const int32_t steps = bits == 4 ? 4 : 2;
    for (int32_t t = 0; t < 4; ++t) {
      for (int32_t j = 0; j < steps; ++j) {
        for (int32_t q = 0; q < 2; ++q) {
          for (int32_t e = 0; e < 2; ++e) {
            const int32_t col = 16 * j + 2 * t + 8 * q + e;
            EXPECT_EQ(WeightOnlyGemvSharedSlot(bits, col), t * 4 * steps + 4 * j + 2 * q + e)
                << bits << " bits, lane t " << t << ", step " << j << ", register " << q << ", element " << e;
          }
        }
      }
    }
  }
}

TEST(WeightOnlyGemvPlanTest, SharedSlotsCoverEachChunkOnce) {
  for (int32_t bits : {4, 8}) {
    const int32_t cols = bits == 4 ? 64 : 32;
    std::set<int32_t> seen;
    for (int32_t col = 0; col < cols; ++col) {
      const int32_t slot = WeightOnlyGemvSharedSlot(bits, col);
      EXPECT_GE(slot, 0) << bits << " bits, column " << col;
      EXPECT_LT(slot, cols) << bits << " bits, column " << col;
      EXPECT_TRUE(seen.insert(slot).second) << bits << " bits: column " << col << " lands on used slot " << slot;
      // Pairs stay together (the staging writes 32-bit words).
      if (col % 2 == 1) {
        EXPECT_EQ(slot, WeightOnlyGemvSharedSlot(bits, col - 1) + 1) << bits << " bits, column " << col;
      }
    }
  }
}

// The pack's A-fragment positions and the GEMV's x order agree: code `index`
// of lane (g, t) multiplies the x value at the slot of its column, which is
// in lane t's run of 4 * steps elements.
TEST(WeightOnlyGemvPlanTest, SharedSlotsMatchThePackedFragments) {
  for (int32_t bits : {4, 8}) {
    const int32_t steps = bits == 4 ? 4 : 2;
    const int32_t per_lane = bits == 4 ? 32 : 16;
    for (int32_t lane = 0; lane < 32; ++lane) {
      const int32_t t = lane % 4;
      for (int32_t index = 0; index < per_lane; ++index) {
        const FragmentPosition pos = WeightOnlyFragmentPosition(bits, lane, index);
        const int32_t slot = WeightOnlyGemvSharedSlot(bits, pos.col);
        EXPECT_GE(slot, t * 4 * steps) << bits << " bits, lane " << lane << ", code " << index;
        EXPECT_LT(slot, (t + 1) * 4 * steps) << bits << " bits, lane " << lane << ", code " << index;
      }
    }
  }
}

TEST(WeightOnlyGemvPlanTest, PlansLlama7bShapesOnAnH100) {
  constexpr int32_t kSms = 132;
  struct Case {
    int32_t bits;
    int64_t n, k, group, rows;
    int32_t slices;
    bool x_shared;
  };
  const Case cases[] = {
      {4, 12288, 4096, 128, 1, 4, true},   // qkv: 768 tiles, 192 blocks at 2 slices is under 2 per SM
      {4, 4096, 4096, 128, 1, 8, true},    // o
      {4, 22016, 4096, 128, 1, 2, true},   // gate_up: 1376 tiles, 344 blocks at 2 slices
      {4, 4096, 11008, 128, 1, 8, true},   // down
      {4, 4096, 11008, 128, 4, 8, true},   // 4 rows of 11008: 88 KB of x
      {4, 4096, 11008, 128, 8, 8, false},  // 8 rows of 11008: 176 KB, x read from global memory
      {4, 4096, 4096, 32, 8, 8, true},     // 64 KB of x + 12 KB of scales and zeros
      {8, 22016, 4096, 4096, 1, 2, true},  // w8a16 per channel
      {8, 4096, 11008, 11008, 8, 8, false},
      {4, 4096, 4096, 128, 12, 8, true},    // 12 rows: 98.5 KB of x
      {4, 4096, 4096, 128, 16, 8, false},   // 16 rows: 131 KB, x read from global memory
      {4, 22016, 4096, 128, 16, 2, false},  // gate_up at 16 rows
  };
  for (const Case& c : cases) {
    const WeightOnlyLayout l = Layout(c.bits, c.n, c.k, c.group);
    const bool zeros = c.group == 32;
    const WeightOnlyGemvPlan p = PlanWeightOnlyGemv(l, c.rows, true, zeros, kSms);
    const std::string what = Describe(l, c.rows);
    ASSERT_TRUE(p.ok()) << what;
    EXPECT_EQ(p.slices, c.slices) << what;
    EXPECT_EQ(p.tiles_per_block * p.slices, kWeightOnlyGemvWarps) << what;
    EXPECT_EQ(p.blocks, (l.n_tiles() + p.tiles_per_block - 1) / p.tiles_per_block) << what;
    EXPECT_GE(int64_t(p.slices) * p.slice_chunks, l.k_chunks()) << what;
    EXPECT_LT(int64_t(p.slices - 1) * p.slice_chunks, l.k_chunks()) << what;
    EXPECT_EQ(p.x_shared, c.x_shared) << what;
    const int64_t per_tile = l.groups * 16 * (2 + (zeros ? 1 : 0));
    EXPECT_EQ(p.staged_bytes, p.tiles_per_block * per_tile) << what;
    EXPECT_EQ(p.shared_bytes, p.x_bytes + p.staged_bytes) << what;
    EXPECT_LE(p.shared_bytes, kWeightOnlyGemvSharedBudget) << what;
    if (p.x_shared) {
      EXPECT_GE(p.x_row_elements, l.k_chunks() * l.chunk_cols()) << what;
      EXPECT_EQ(p.x_bytes, c.rows * p.x_row_elements * 2) << what;
      // Rows g and g + 1 on different banks for the lanes' 16-byte reads.
      if (c.bits == 4) {
        EXPECT_EQ(p.x_row_elements * 2 % 32, 16) << what;
      } else {
        EXPECT_EQ(p.x_row_elements * 2 % 128, 64) << what;
      }
    } else {
      EXPECT_EQ(p.x_bytes, 0) << what;
    }
  }
}

// With an H100's per-block shared memory (227 KB opt-in less the kernel's
// 8 KB of partial sums), x that misses the two-blocks-an-SM budget goes in
// shared memory at one block an SM when it fits there, and from global
// memory otherwise; the slices follow the same rule.
TEST(WeightOnlyGemvPlanTest, PlansXInTheDevicesLargerSharedMemory) {
  constexpr int32_t kSms = 132;
  constexpr int64_t kH100 = 232448 - 8192;
  struct Case {
    int64_t n, k, rows;
    bool x_shared;
    int32_t slices;
  };
  const Case cases[] = {
      {12288, 4096, 16, true, 4},  // qkv: 131 KB of x + 4 KB of scales, 384 blocks
      {22016, 4096, 16, true, 2},  // gate_up
      {4096, 4096, 16, true, 8},   // o
      {4096, 4096, 12, true, 8},   // fits the two-block budget already
      {4096, 11008, 8, true, 8},   // 176 KB of x
      {4096, 11008, 16, false, 8}, // down at 16 rows: 352 KB, from global memory
  };
  for (const Case& c : cases) {
    const WeightOnlyLayout l = Layout(4, c.n, c.k, 128);
    const std::string what = Describe(l, c.rows);
    const WeightOnlyGemvPlan p = PlanWeightOnlyGemv(l, c.rows, true, false, kSms, 0, kH100);
    const WeightOnlyGemvPlan two = PlanWeightOnlyGemv(l, c.rows, true, false, kSms);
    ASSERT_TRUE(p.ok()) << what;
    ASSERT_TRUE(two.ok()) << what;
    EXPECT_EQ(p.x_shared, c.x_shared) << what;
    EXPECT_EQ(p.slices, c.slices) << what;
    EXPECT_LE(p.shared_bytes, p.shared_limit) << what;
    if (two.x_shared || !p.x_shared) {
      // Nothing to gain from the larger limit: the two-block plan stands.
      EXPECT_EQ(p.shared_limit, kWeightOnlyGemvSharedBudget) << what;
      EXPECT_EQ(p.shared_bytes, two.shared_bytes) << what;
      EXPECT_EQ(p.slices, two.slices) << what;
    } else {
      EXPECT_EQ(p.shared_limit, kH100) << what;
      EXPECT_GT(p.shared_bytes, kWeightOnlyGemvSharedBudget) << what;
      EXPECT_EQ(p.x_bytes, c.rows * p.x_row_elements * 2) << what;
      EXPECT_EQ(p.x_row_elements * 2 % 32, 16) << what;
    }
  }
}

// Random layers: every plan keeps its invariants, whatever the SM count.
TEST(WeightOnlyGemvPlanTest, PlansKeepTheirInvariants) {
  std::mt19937 rng(5);
  for (int i = 0; i < 2000; ++i) {
    const int32_t bits = rng() % 2 ? 4 : 8;
    const int64_t n = 1 + rng() % 60000;
    const int64_t group = (rng() % 4 == 0) ? 0 : 16 * (1 + rng() % 16);
    const int64_t k = group == 0 ? 2 * (1 + rng() % 9000) : group * (1 + rng() % 200);
    const WeightOnlyLayout l = Layout(bits, n, k, group == 0 ? k : group);
    const int64_t rows = 1 + rng() % kWeightOnlyGemvMaxRows;
    const bool half = rng() % 2, zeros = rng() % 2;
    const int32_t sms = 1 + rng() % 200;
    // Half the layers with a device limit above the two-block budget.
    const int64_t limit = rng() % 2 ? kWeightOnlyGemvSharedBudget : 100 * 1024 + 16 * int64_t(rng() % 8000);
    const WeightOnlyGemvPlan p = PlanWeightOnlyGemv(l, rows, half, zeros, sms, 0, limit);
    const std::string what = Describe(l, rows) + ", " + std::to_string(sms) + " SMs, limit " + std::to_string(limit);
    const int64_t per_tile = l.groups * 16 * ((half ? 2 : 4) + (zeros ? 1 : 0));
    if (per_tile > kWeightOnlyGemvSharedBudget) {
      EXPECT_FALSE(p.ok()) << what;
      continue;
    }
    ASSERT_TRUE(p.ok()) << what;
    EXPECT_TRUE(p.slices == 1 || p.slices == 2 || p.slices == 4 || p.slices == 8) << what;
    EXPECT_GE(p.blocks * p.tiles_per_block, l.n_tiles()) << what;
    EXPECT_LT((p.blocks - 1) * p.tiles_per_block, l.n_tiles()) << what;
    EXPECT_GE(int64_t(p.slices) * p.slice_chunks, l.k_chunks()) << what;
    EXPECT_LE(p.shared_bytes, p.shared_limit) << what;
    EXPECT_LE(p.shared_limit, limit) << what;
    if (p.shared_limit > kWeightOnlyGemvSharedBudget) {
      EXPECT_TRUE(p.x_shared) << what;  // the larger limit is taken only for x
      EXPECT_GT(p.x_bytes + p.staged_bytes / p.tiles_per_block, kWeightOnlyGemvSharedBudget) << what;
    }
    EXPECT_EQ(p.shared_bytes % 16, 0) << what;
    EXPECT_EQ(p.x_bytes % 16, 0) << what;
    // A forced slice count gives the same x placement.
    const WeightOnlyGemvPlan forced = PlanWeightOnlyGemv(l, rows, half, zeros, sms, 8, limit);
    ASSERT_TRUE(forced.ok()) << what;
    EXPECT_EQ(forced.slices, 8) << what;
    EXPECT_EQ(forced.x_shared, p.x_shared) << what;
  }
}

TEST(WeightOnlyGemvPlanTest, RefusesWhatTheKernelCannotRun) {
  const WeightOnlyLayout ok = Layout(4, 64, 256, 64);
  EXPECT_TRUE(PlanWeightOnlyGemv(ok, 1, true, false, 132).ok());
  EXPECT_TRUE(PlanWeightOnlyGemv(ok, 8, false, true, 132).ok());
  EXPECT_FALSE(PlanWeightOnlyGemv(ok, 0, true, false, 132).ok());
  EXPECT_TRUE(PlanWeightOnlyGemv(ok, 16, true, false, 132).ok());
  EXPECT_FALSE(PlanWeightOnlyGemv(ok, 17, true, false, 132).ok());
  EXPECT_FALSE(PlanWeightOnlyGemv(ok, 1, true, false, 132, 3).ok());
  EXPECT_FALSE(PlanWeightOnlyGemv(Layout(3, 64, 256, 64), 1, true, false, 132).ok());
  EXPECT_FALSE(PlanWeightOnlyGemv(Layout(4, 64, 255, 255), 1, true, false, 132).ok());  // k odd
  EXPECT_FALSE(PlanWeightOnlyGemv(Layout(4, 64, 240, 24), 1, true, false, 132).ok());  // group not a multiple of 16
  // 8192 groups of 16: 384 KB of fp32 scales and zeros for one tile.
  EXPECT_FALSE(PlanWeightOnlyGemv(Layout(4, 64, 131072, 16), 1, false, true, 132).ok());
  // Per channel with k not a multiple of 16 is fine (one group).
  EXPECT_TRUE(PlanWeightOnlyGemv(Layout(8, 33, 1000, 1000), 3, true, false, 132).ok());
}

TEST(WeightOnlyGemvPlanTest, SelectsTheKernelByRows) {
  for (int64_t rows = 1; rows <= kWeightOnlyGemvMaxRows; ++rows) {
    EXPECT_EQ(SelectWeightOnlyKernel(rows, true, true), WeightOnlyKernel::kGemv) << rows;
    EXPECT_EQ(SelectWeightOnlyKernel(rows, false, true), WeightOnlyKernel::kGemm) << rows;
    EXPECT_EQ(SelectWeightOnlyKernel(rows, false, false), WeightOnlyKernel::kDequantizeGemm) << rows;
  }
  for (int64_t rows = kWeightOnlyGemvMaxRows + 1; rows <= kWeightOnlyGemmFastRows; ++rows) {
    EXPECT_EQ(SelectWeightOnlyKernel(rows, true, true), WeightOnlyKernel::kGemm) << rows;
    EXPECT_EQ(SelectWeightOnlyKernel(rows, false, false), WeightOnlyKernel::kDequantizeGemm) << rows;
  }
  EXPECT_EQ(SelectWeightOnlyKernel(kWeightOnlyGemmFastRows + 1, true, true), WeightOnlyKernel::kDequantizeGemm);
  EXPECT_EQ(SelectWeightOnlyKernel(2048, true, true), WeightOnlyKernel::kDequantizeGemm);
}

}  // namespace
}  // namespace tern::kernels
