// The weight-only GEMV's index arithmetic, run on the CPU: a line-by-line
// emulation of weight_only_gemv.cu (blocks, warps and lanes of a plan from
// PlanWeightOnlyGemv; x staged by both staging paths into
// WeightOnlyGemvSharedSlot order or read from "global memory"; the block's
// staged scales and zero codes; the A fragments as weight_only_pack.h
// places the codes; each m16n8k16 MMA assembled from the 32 lanes'
// fragments, PTX's layouts; per-group flushes; the slices' sums) against
// quant_gemm.h's reference. Slots never written by the staging hold NaN, so
// a lane that reads one fails the comparison. The GPU test
// (weight_only_gemm_cuda_test) checks the kernel itself; this one checks,
// without a GPU, that the plan, the staging order and the fragment mapping
// fit together for every shape class.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/gemm/quant_gemm.h"
#include "kernels/gemm/weight_only_gemv.h"
#include "kernels/gemm/weight_only_pack.h"

namespace tern::kernels {
namespace {

float HalfBitsToFloat(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
  const uint32_t bits = (h & 0x7fffu) == 0 ? sign : sign | ((exp - 15 + 127) << 23) | (man << 13);
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// y [rows, n] as weight_only_gemv.cu computes it (fp32 arithmetic instead of
// the MMA's), `vector_staging` choosing the 16-byte staging path.
std::vector<float> EmulateGemv(const PackedWeightOnly& packed, const WeightOnlyGemvPlan& plan, int64_t rows,
                               const std::vector<float>& x, int64_t x_stride, const std::vector<float>& bias,
                               bool vector_staging) {
  const WeightOnlyLayout& l = packed.layout;
  const int kSteps = l.bits == 4 ? 4 : 2;
  const int kChunkCols = 16 * kSteps;
  const int row_tiles = rows <= 8 ? 1 : 2;
  const int32_t chunks = int32_t(l.k_chunks()), n_tiles = int32_t(l.n_tiles()), groups = int32_t(l.groups);
  const int32_t mid = 1 << (l.bits - 1);
  const bool has_zeros = !packed.zeros.empty();
  const bool chunk_in_group = l.groups == 1 || l.group_size % l.chunk_cols() == 0;
  const auto group_of = [&](int32_t col) {
    if (groups == 1) return 0;
    const int32_t g = int32_t(col / l.group_size);
    return g < groups ? g : groups - 1;
  };
  const auto scale_at = [&](size_t at) {
    return packed.half_scales.empty() ? packed.float_scales[at] : HalfBitsToFloat(packed.half_scales[at]);
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> y(size_t(rows * l.n), nan);
  const int tpb = plan.tiles_per_block, slices = plan.slices;
  for (int64_t block = 0; block < plan.blocks; ++block) {
    const int32_t tile0 = int32_t(block) * tpb;
    // Staged scales and zeros: the block's tiles, [tile][group][16], copied flat.
    const int32_t block_tiles = std::min(tpb, n_tiles - tile0);
    std::vector<float> staged_scales(size_t(tpb * groups * 16), nan);
    std::vector<int32_t> staged_zeros(size_t(tpb * groups * 16), -1000);
    for (int32_t i = 0; i < block_tiles * groups * 16; ++i) {
      staged_scales[i] = scale_at(size_t(tile0) * groups * 16 + i);
      if (has_zeros) staged_zeros[i] = packed.zeros[size_t(tile0) * groups * 16 + i];
    }
    // x staged: rows x x_row_elements, NaN where the staging writes nothing.
    std::vector<float> xs;
    if (plan.x_shared) {
      xs.assign(size_t(rows * plan.x_row_elements), nan);
      const int32_t width = vector_staging ? 8 : 2;
      const int32_t row_pieces = chunks * (kChunkCols / width);
      for (int32_t i = 0; i < int32_t(rows) * row_pieces; ++i) {
        const int32_t m = i / row_pieces, col = (i % row_pieces) * width;
        const int32_t in_chunk = col % kChunkCols;
        float* dst = xs.data() + m * plan.x_row_elements + (col - in_chunk);
        for (int32_t q = 0; q < width / 2; ++q) {
          const int32_t slot = WeightOnlyGemvSharedSlot(l.bits, in_chunk + 2 * q);
          for (int e = 0; e < 2; ++e) dst[slot + e] = col < l.k ? x[m * x_stride + col + 2 * q + e] : 0.0f;
        }
      }
    }
    std::vector<float> partial(size_t(8 * row_tiles * 4 * 32), nan);
    for (int warp = 0; warp < 8; ++warp) {
      const int tile_local = warp / slices;
      const int32_t tile = tile0 + tile_local;
      const int32_t c_begin = (warp % slices) * plan.slice_chunks;
      const int32_t c_end = tile < n_tiles ? std::min(c_begin + plan.slice_chunks, chunks) : c_begin;
      std::vector<float> acc(size_t(32 * row_tiles * 4), 0.0f);
      for (int32_t c = c_begin; c < c_end; ++c) {
        const int32_t chunk_col = c * kChunkCols;
        std::vector<float> part(size_t(32 * row_tiles * 4), 0.0f);
        std::vector<float> scale_lo(32), scale_hi(32);
        std::vector<int32_t> zero_lo(32, mid), zero_hi(32, mid);
        const auto load_group = [&](int32_t group) {
          for (int lane = 0; lane < 32; ++lane) {
            const int32_t at = (tile_local * groups + group) * 16 + lane / 4;
            scale_lo[lane] = staged_scales[at];
            scale_hi[lane] = staged_scales[at + 8];
            if (has_zeros) {
              zero_lo[lane] = staged_zeros[at];
              zero_hi[lane] = staged_zeros[at + 8];
            }
          }
        };
        const auto flush = [&] {
          for (int lane = 0; lane < 32; ++lane) {
            for (int tt = 0; tt < row_tiles; ++tt) {
              for (int i = 0; i < 4; ++i) {
                const size_t at = size_t((lane * row_tiles + tt) * 4 + i);
                acc[at] += (i < 2 ? scale_lo[lane] : scale_hi[lane]) * part[at];
                part[at] = 0.0f;
              }
            }
          }
        };
        if (chunk_in_group) load_group(group_of(chunk_col));
        int32_t current = -1;
        for (int j = 0; j < kSteps; ++j) {
          if (!chunk_in_group) {
            const int32_t group = group_of(chunk_col + 16 * j);
            if (group != current) {
              if (current >= 0) flush();
              current = group;
              load_group(group);
            }
          }
          // A [16][16] from every lane's registers (c - zero), B [16][8] per row tile.
          float a[16][16];
          for (auto& r : a) {
            for (auto& v : r) v = nan;
          }
          for (int lane = 0; lane < 32; ++lane) {
            const int g = lane / 4, t = lane % 4;
            uint32_t words[4];
            std::memcpy(words, packed.codes.data() + (size_t(tile) * chunks + c) * 512 + lane * 16, 16);
            for (int p = 0; p < 4; ++p) {
              uint32_t lo, hi;
              if (l.bits == 4) {
                lo = (words[j] >> (4 * p)) & 0xfu;
                hi = (words[j] >> (16 + 4 * p)) & 0xfu;
              } else {
                const uint32_t v = words[2 * j + (p >> 1)];
                lo = (v >> (8 * (p & 1))) & 0xffu;
                hi = (v >> (16 + 8 * (p & 1))) & 0xffu;
              }
              const int32_t z = (p & 1) ? zero_hi[lane] : zero_lo[lane];
              const int row = g + 8 * (p & 1), col = 2 * t + 8 * (p >> 1);
              a[row][col] = float(int32_t(lo) - z);
              a[row][col + 1] = float(int32_t(hi) - z);
            }
          }
          for (int tt = 0; tt < row_tiles; ++tt) {
            float b[16][8];
            for (int lane = 0; lane < 32; ++lane) {
              const int g = lane / 4, t = lane % 4;
              const int32_t xrow = 8 * tt + g;
              for (int q = 0; q < 2; ++q) {
                for (int e = 0; e < 2; ++e) {
                  float v = 0.0f;
                  if (xrow < rows) {
                    if (plan.x_shared) {
                      v = xs[xrow * plan.x_row_elements + chunk_col + t * 4 * kSteps + (2 * j + q) * 2 + e];
                    } else {
                      const int32_t col = chunk_col + 16 * j + 2 * t + 8 * q;
                      v = col < l.k ? x[xrow * x_stride + col + e] : 0.0f;
                    }
                  }
                  b[2 * t + 8 * q + e][g] = v;
                }
              }
            }
            for (int lane = 0; lane < 32; ++lane) {
              const int g = lane / 4, t = lane % 4;
              for (int i = 0; i < 4; ++i) {
                const int row = g + 8 * (i >> 1), col = 2 * t + (i & 1);
                float sum = 0.0f;
                for (int kk = 0; kk < 16; ++kk) sum += a[row][kk] * b[kk][col];
                part[size_t((lane * row_tiles + tt) * 4 + i)] += sum;
              }
            }
          }
        }
        flush();
      }
      for (int tt = 0; tt < row_tiles; ++tt) {
        for (int i = 0; i < 4; ++i) {
          for (int lane = 0; lane < 32; ++lane) {
            partial[size_t(((warp * row_tiles + tt) * 4 + i) * 32 + lane)] = acc[size_t((lane * row_tiles + tt) * 4 + i)];
          }
        }
      }
    }
    for (int o = 0; o < tpb * row_tiles * 128; ++o) {
      const int tl = o / (row_tiles * 128), tt = (o / 128) % row_tiles, i = (o / 32) % 4, ln = o % 32;
      float sum = 0.0f;
      for (int sl = 0; sl < slices; ++sl) sum += partial[size_t((((tl * slices + sl) * row_tiles + tt) * 4 + i) * 32 + ln)];
      const int32_t feature = (tile0 + tl) * 16 + ln / 4 + 8 * (i >> 1);
      const int32_t row = 8 * tt + 2 * (ln % 4) + (i & 1);
      if (feature < l.n && row < rows) y[size_t(row * l.n + feature)] = sum + (bias.empty() ? 0.0f : bias[feature]);
    }
  }
  return y;
}

struct Config {
  int32_t bits;
  int64_t n, k, group;  // group == k: per channel
  bool symmetric, half_scales, bias;
};

TEST(WeightOnlyGemvEmulationTest, MatchesTheReferenceForEveryPlanShape) {
  const Config configs[] = {
      {4, 37, 96, 32, false, true, true},      // partial tile and chunk, two groups per chunk
      {4, 133, 1088, 64, false, true, false},  // 17 chunks, 9 tiles
      {4, 50, 1000, 1000, true, false, true},  // per channel, k not a multiple of 16, fp32 scales
      {4, 24, 256, 16, false, true, false},    // four groups per chunk
      {4, 40, 512, 128, false, true, true},    // two chunks per group
      {8, 45, 144, 16, false, false, true},    // 8 bits, g16: two groups per chunk
      {8, 70, 2080, 32, true, true, false},    // 65 chunks
      {8, 19, 1002, 1002, false, true, false}, // per channel, k = 2 mod 8
  };
  uint32_t seed = 11;
  for (const Config& c : configs) {
    std::mt19937 rng(seed++);
    const int32_t levels = 1 << c.bits;
    const int64_t groups = c.k / c.group;
    std::vector<uint8_t> codes(size_t(c.bits == 8 ? c.n * c.k : c.n * c.k / 2), 0);
    for (int64_t i = 0; i < c.n * c.k; ++i) {
      const uint8_t code = uint8_t(rng() % levels);
      if (c.bits == 8) {
        codes[i] = code;
      } else {
        codes[i / 2] |= uint8_t(code << (4 * (i % 2)));
      }
    }
    std::vector<float> scales(size_t(c.n * groups));
    for (auto& s : scales) s = c.half_scales ? std::ldexp(float(64 + rng() % 64), -12) : 1e-3f * float(1 + rng() % 1000);
    std::vector<uint8_t> zeros(size_t(c.n * groups));
    for (auto& z : zeros) z = c.symmetric ? uint8_t(levels / 2) : uint8_t(rng() % (levels + 1));
    std::vector<float> bias;
    std::normal_distribution<float> normal(0.0f, 1.0f);
    if (c.bias) {
      bias.resize(size_t(c.n));
      for (auto& b : bias) b = normal(rng);
    }
    const WeightOnlyLayout layout{c.bits, c.n, c.k, c.group, groups};
    PackedWeightOnly packed;
    ASSERT_EQ(PackWeightOnly(layout, codes.data(), scales.data(), zeros.data(), &packed), "");
    const WeightOnlyParams params{c.n, c.k, c.group, c.bits};
    for (int64_t rows : {1, 3, 8, 9, 16}) {
      const int64_t x_stride = c.k + 6;
      std::vector<float> x(size_t(rows * x_stride));
      for (auto& v : x) v = normal(rng);
      std::vector<float> want(size_t(rows * c.n));
      WeightOnlyGemmReference(params, rows, x.data(), x_stride, nullptr, codes.data(), scales.data(), zeros.data(),
                              c.bias ? bias.data() : nullptr, want.data(), c.n);
      double scale = 0.0;
      for (float v : want) scale = std::max(scale, double(std::abs(v)));
      for (int32_t slices : {1, 2, 4, 8}) {
        const WeightOnlyGemvPlan base =
            PlanWeightOnlyGemv(layout, rows, !packed.half_scales.empty(), !packed.zeros.empty(), 132, slices);
        ASSERT_TRUE(base.ok());
        for (int path = 0; path < 3; ++path) {
          // 0: x staged 16 bytes at a time, 1: pair by pair, 2: read from global memory.
          if (path == 0 && c.k % 8 != 0) continue;
          if (path != 2 && !base.x_shared) continue;
          WeightOnlyGemvPlan plan = base;
          if (path == 2) {
            plan.x_shared = false;
            plan.x_row_elements = 0;
          }
          const std::vector<float> got = EmulateGemv(packed, plan, rows, x, x_stride, bias, path == 0);
          std::ostringstream what;
          what << c.bits << " bits [" << c.n << ", " << c.k << "] group " << c.group << ", rows " << rows << ", "
               << slices << " slices, path " << path;
          for (int64_t i = 0; i < rows * c.n; ++i) {
            ASSERT_LE(std::abs(got[i] - want[i]), 1e-4 * scale + 1e-5)
                << what.str() << ": first mismatch at row " << i / c.n << ", feature " << i % c.n << ": got "
                << got[i] << ", want " << want[i];
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace tern::kernels
