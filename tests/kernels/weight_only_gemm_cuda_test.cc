// The W4A16 / W8A16 kernels against quant_gemm.h's CPU reference, on layers
// repacked by PackWeightOnly: every row count 1..8 and some up to the limit
// (one, two, four and eight MMA row tiles, partial ones), output counts that are
// not a multiple of the 16-row tile, input counts that are not a multiple of
// the 64- or 32-column chunk, per-channel layers with k not a multiple of 16,
// group sizes 16..128, symmetric and asymmetric (zero codes up to 2^bits),
// fp16 and fp32 scales, a bias, strided rows, fp16 and bf16, scales staged in
// shared memory and read from global memory (layers too large to stage). Also the
// dequantization (exact: both sides round the same fp32 value once), the
// act-order column gather, and the calls the GEMM must decline. The decode
// GEMV (weight_only_gemv.h) on the same layers at rows 1..16: x staged with
// 16-byte and 4-byte loads or read from global memory, every slice count,
// several tiles per block, act order, and the calls it must decline.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/gemm/quant_gemm.h"
#include "kernels/gemm/weight_only_gemm.h"
#include "kernels/gemm/weight_only_gemv.h"
#include "kernels/gemm/weight_only_pack.h"
#include "tests/kernels/cuda_test_util.h"

namespace tern::kernels {
namespace {

using testing::DeviceArray;
using testing::DeviceVector;

struct Config {
  int32_t bits;
  int64_t n, k, group;  // group == k: per channel
  bool symmetric, half_scales, bias;
};

std::string Describe(const Config& c) {
  std::ostringstream s;
  s << c.bits << " bits, n " << c.n << ", k " << c.k << ", group " << c.group << (c.symmetric ? ", sym" : ", asym")
    << (c.half_scales ? ", fp16 scales" : ", fp32 scales") << (c.bias ? ", bias" : "");
  return s.str();
}

// A random layer in quant_gemm.h's row-major form, packed and uploaded.
struct Layer {
  WeightOnlyParams params;
  std::vector<uint8_t> codes, zeros;
  std::vector<float> scales;
  PackedWeightOnly packed;
  std::unique_ptr<DeviceVector<uint8_t>> d_codes, d_zeros;
  std::unique_ptr<DeviceVector<uint16_t>> d_half_scales;
  std::unique_ptr<DeviceVector<float>> d_float_scales;
  WeightOnlyDeviceWeight device;
};

std::unique_ptr<Layer> MakeLayer(const Config& c, uint32_t seed) {
  auto l = std::make_unique<Layer>();
  std::mt19937 rng(seed);
  l->params = {c.n, c.k, c.group, c.bits};
  const int32_t levels = 1 << c.bits;
  const int64_t groups = c.k / c.group;
  l->codes.assign(size_t(c.bits == 8 ? c.n * c.k : c.n * c.k / 2), 0);
  for (int64_t i = 0; i < c.n * c.k; ++i) {
    const uint8_t code = uint8_t(rng() % levels);
    if (c.bits == 8) {
      l->codes[i] = code;
    } else {
      l->codes[i / 2] |= uint8_t(code << (4 * (i % 2)));
    }
  }
  // Outputs of order 1..10: |c - z| ~ levels / 4, k terms.
  const float base = 4.0f / (float(levels) * std::sqrt(float(c.k)));
  std::uniform_real_distribution<float> jitter(0.5f, 2.0f);
  l->scales.resize(size_t(c.n * groups));
  for (auto& s : l->scales) {
    s = base * jitter(rng);
    s = c.half_scales ? runtime::HalfToFloat(runtime::FloatToHalf(s)) : s * (1.0f + 1e-6f);
  }
  l->zeros.resize(size_t(c.n * groups));
  // Asymmetric zero codes span [0, 2^bits] (GPTQ's original format reaches 2^bits).
  for (auto& z : l->zeros) z = c.symmetric ? uint8_t(levels / 2) : uint8_t(rng() % (levels + 1));
  const WeightOnlyLayout layout{c.bits, c.n, c.k, c.group, groups};
  const std::string error = PackWeightOnly(layout, l->codes.data(), l->scales.data(), l->zeros.data(), &l->packed);
  EXPECT_EQ(error, "") << Describe(c);
  EXPECT_EQ(l->packed.half_scales.empty(), !c.half_scales) << Describe(c);
  l->d_codes = std::make_unique<DeviceVector<uint8_t>>(l->packed.codes);
  l->device.layout = layout;
  l->device.codes = l->d_codes->data();
  if (!l->packed.half_scales.empty()) {
    l->d_half_scales = std::make_unique<DeviceVector<uint16_t>>(l->packed.half_scales);
    l->device.scales = l->d_half_scales->data();
    l->device.half_scales = true;
  } else {
    l->d_float_scales = std::make_unique<DeviceVector<float>>(l->packed.float_scales);
    l->device.scales = l->d_float_scales->data();
    l->device.half_scales = false;
  }
  if (!l->packed.zeros.empty()) {
    l->d_zeros = std::make_unique<DeviceVector<uint8_t>>(l->packed.zeros);
    l->device.zeros = l->d_zeros->data();
  }
  return l;
}

std::vector<float> Normal(size_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> out(count);
  for (auto& v : out) v = normal(rng);
  return out;
}

// The layer's bias when the config has one (rounded in `*bias` to the type,
// as the kernel reads it), uploaded; null otherwise. Advances `*seed`.
std::unique_ptr<DeviceArray> MakeBias(ScalarType type, const Config& c, uint32_t* seed, std::vector<float>* bias) {
  if (!c.bias) return nullptr;
  *bias = Normal(size_t(c.n), (*seed)++);
  auto d_bias = std::make_unique<DeviceArray>(type, bias->size());
  d_bias->Upload(*bias);
  return d_bias;
}

int32_t DeviceSms() {
  int device = 0, sms = 1;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  return sms;
}

// The worst element of y [rows, n] (row stride `stride`) against the reference.
std::string Worst(const std::vector<float>& got, const std::vector<float>& want, int64_t rows, int64_t n,
                  int64_t stride) {
  float worst = -1.0f;
  int64_t at_row = 0, at_col = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      const float d = std::abs(got[r * stride + c] - want[r * stride + c]);
      if (!(d <= worst)) {
        worst = d;
        at_row = r;
        at_col = c;
      }
    }
  }
  std::ostringstream s;
  s << "worst at row " << at_row << ", feature " << at_col << ": got " << got[at_row * stride + at_col] << ", want "
    << want[at_row * stride + at_col];
  return s.str();
}

class WeightOnlyGemmCudaTest : public ::testing::TestWithParam<ScalarType> {
 protected:
  void SetUp() override {
    if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  }
};

const Config kConfigs[] = {
    {4, 16, 64, 32, true, true, false},       // one tile, one chunk
    {4, 37, 96, 32, false, true, true},       // partial tile; k not a multiple of the 64-column chunk
    {4, 100, 384, 128, false, false, false},  // g128, fp32 scales
    {4, 333, 1000, 1000, true, true, true},   // per channel, k not a multiple of 16
    {4, 256, 11008, 128, true, true, false},  // 172 chunks: not a multiple of warps x batch
    {4, 64, 4096, 64, false, true, false},    // g64
    {8, 16, 32, 32, false, true, false},      // 8 bits: one chunk
    {8, 45, 144, 16, false, false, true},     // g16, partial tile and chunk
    {8, 130, 1000, 1000, true, true, false},  // per channel
    {8, 96, 4096, 128, false, true, true},    // g128 with zero points
    {8, 50, 2048, 32, true, false, false},    // g32, fp32 scales
    {8, 33, 640, 64, true, false, false},     // g64, fp32 scales
    {4, 80, 2048, 32, false, true, true},     // g32 with zero points: two groups per chunk
    {8, 48, 8192, 16, false, true, true},     // 24 KB of scales and zeros: staged up to 32 rows, not at 64
    {4, 40, 11008, 16, false, false, false},  // 55 KB of scales and zeros: never staged
};

TEST_P(WeightOnlyGemmCudaTest, MatchesReference) {
  const ScalarType type = GetParam();
  uint32_t seed = 1;
  for (const Config& c : kConfigs) {
    auto layer = MakeLayer(c, seed++);
    std::vector<float> bias;
    std::unique_ptr<DeviceArray> d_bias = MakeBias(type, c, &seed, &bias);
    for (int64_t rows : {1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 24, 32, 33, 64}) {
      const int64_t x_stride = c.k + 6, y_stride = c.n + 3;
      auto x = Normal(size_t(rows * x_stride), seed++);
      DeviceArray dx(type, x.size()), dy(type, size_t(rows * y_stride));
      dx.Upload(x);
      std::vector<float> y_init(size_t(rows * y_stride), 12345.0f);
      dy.Upload(y_init);
      const WeightOnlyGemmParams p{rows, x_stride, y_stride};
      ASSERT_TRUE(WeightOnlyGemmSupported(type, layer->device, p, dx.data())) << Describe(c);
      ASSERT_EQ(LaunchWeightOnlyGemm(type, layer->device, p, dx.data(), c.bias ? d_bias->data() : nullptr, dy.data(),
                                     nullptr),
                cudaSuccess)
          << Describe(c) << ", rows " << rows;
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << Describe(c) << ", rows " << rows;
      std::vector<float> want = y_init;  // padding columns of y stay untouched
      for (auto& v : want) v = testing::Round(type, v);
      WeightOnlyGemmReference(layer->params, rows, x.data(), x_stride, nullptr, layer->codes.data(),
                              layer->scales.data(), layer->zeros.data(), c.bias ? bias.data() : nullptr, want.data(),
                              y_stride);
      const std::vector<float> got = dy.Download();
      const testing::OutputRegion region = testing::SplitOutputRegion(got, want, rows, c.n, y_stride);
      ASSERT_EQ(region.padding_written, "") << Describe(c) << ", rows " << rows;
      EXPECT_LT(testing::RelativeError(region.got, region.want), testing::Tolerance(type))
          << Describe(c) << ", rows " << rows << ": " << Worst(got, want, rows, c.n, y_stride);
    }
  }
}

// The first element of y off by more than `tolerance` times the largest
// |want| of the region (row, feature, got, want), or "" when there is none.
std::string FirstMismatch(const std::vector<float>& got, const std::vector<float>& want, int64_t rows, int64_t n,
                          int64_t stride, float tolerance) {
  float scale = 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < n; ++c) scale = std::max(scale, std::abs(want[r * stride + c]));
  }
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      const float g = got[r * stride + c], w = want[r * stride + c];
      if (!(std::abs(g - w) <= tolerance * scale)) {
        std::ostringstream s;
        s << "first mismatch at row " << r << ", feature " << c << " (index " << r * stride + c << "): got " << g
          << ", want " << w << " (largest |want| " << scale << ")";
        return s.str();
      }
    }
  }
  return "";
}

// What LaunchWeightOnlyGemv plans with: the device's shared memory for a
// GEMV block, or `cap` when that is smaller and not 0.
int64_t GemvSharedLimit(int64_t cap) {
  const int64_t limit = WeightOnlyGemvDeviceSharedBytes();
  return cap > 0 ? std::min(cap, limit) : limit;
}

std::string DescribePlan(const WeightOnlyDeviceWeight& layer, int64_t rows, int32_t slices, int64_t max_shared) {
  const int32_t sms = DeviceSms();
  const WeightOnlyGemvPlan p = PlanWeightOnlyGemv(layer.layout, rows, layer.half_scales, layer.zeros != nullptr, sms,
                                                  slices, GemvSharedLimit(max_shared));
  std::ostringstream s;
  s << "plan: " << p.slices << " slices x " << p.tiles_per_block << " tiles per block, " << p.blocks << " blocks, x "
    << (p.x_shared ? "in shared memory" : "from global memory") << ", " << p.shared_bytes << " of "
    << p.shared_limit << " shared bytes";
  return s.str();
}

// Runs the GEMV on `rows` rows of fresh x (row stride x_stride) and compares
// with the reference; `slices` 0 is the plan's own choice, `max_shared` 0
// the device's shared memory (else a cap on it).
void CheckGemv(ScalarType type, const Config& c, const Layer& layer, const std::vector<float>& bias,
               DeviceArray* d_bias, int64_t rows, int64_t x_stride, int32_t slices, uint32_t seed,
               int64_t max_shared = 0) {
  const int64_t y_stride = c.n + 3;
  auto x = Normal(size_t(rows * x_stride), seed);
  DeviceArray dx(type, x.size()), dy(type, size_t(rows * y_stride));
  dx.Upload(x);
  std::vector<float> y_init(size_t(rows * y_stride), 12345.0f);
  dy.Upload(y_init);
  const WeightOnlyGemmParams p{rows, x_stride, y_stride};
  const std::string what = Describe(c) + ", rows " + std::to_string(rows) + ", x stride " + std::to_string(x_stride) +
                           ", " + DescribePlan(layer.device, rows, slices, max_shared);
  ASSERT_TRUE(WeightOnlyGemvSupported(type, layer.device, p, dx.data())) << what;
  ASSERT_EQ(LaunchWeightOnlyGemv(type, layer.device, p, dx.data(), d_bias != nullptr ? d_bias->data() : nullptr,
                                 dy.data(), nullptr, true, slices, max_shared),
            cudaSuccess)
      << what;
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
  std::vector<float> want = y_init;  // padding columns of y stay untouched
  for (auto& v : want) v = testing::Round(type, v);
  WeightOnlyGemmReference(layer.params, rows, x.data(), x_stride, nullptr, layer.codes.data(), layer.scales.data(),
                          layer.zeros.data(), d_bias != nullptr ? bias.data() : nullptr, want.data(), y_stride);
  const std::vector<float> got = dy.Download();
  const testing::OutputRegion region = testing::SplitOutputRegion(got, want, rows, c.n, y_stride);
  ASSERT_EQ(region.padding_written, "") << what;
  const float tolerance = testing::Tolerance(type);
  EXPECT_LT(testing::RelativeError(region.got, region.want), tolerance)
      << what << ": " << FirstMismatch(got, want, rows, c.n, y_stride, 4 * tolerance) << "; "
      << Worst(got, want, rows, c.n, y_stride);
  // Elementwise too: a few wrong outputs among many right ones hardly move the normwise error.
  const std::string mismatch = FirstMismatch(got, want, rows, c.n, y_stride, 8 * tolerance);
  EXPECT_EQ(mismatch, "") << what;
}

// Layers for the GEMV's plans beyond kConfigs: many tiles (several tiles per
// block on GPUs with up to ~260 / ~130 SMs), k not a multiple of 8 (x staged
// pair by pair), per channel 8 bits with k odd in chunks.
const Config kGemvConfigs[] = {
    {4, 12805, 256, 64, false, true, true},    // 801 tiles, the last partial
    {8, 51300, 64, 64, true, true, false},     // 3207 tiles: one slice per tile on an H100
    {8, 24, 1002, 1002, false, true, true},    // per channel, k = 2 mod 8
    {4, 19, 1010, 1010, false, false, false},  // per channel, fp32 scales, k = 2 mod 8
    {4, 4096, 4096, 128, true, true, false},   // Llama-2-7B o, symmetric g128
    {4, 512, 11008, 32, false, true, true},    // g32 asymmetric, k of down
};

TEST_P(WeightOnlyGemmCudaTest, GemvMatchesReference) {
  const ScalarType type = GetParam();
  uint32_t seed = 500;
  std::vector<Config> configs(std::begin(kConfigs), std::end(kConfigs));
  configs.insert(configs.end(), std::begin(kGemvConfigs), std::end(kGemvConfigs));
  for (const Config& c : configs) {
    auto layer = MakeLayer(c, seed++);
    std::vector<float> bias;
    std::unique_ptr<DeviceArray> d_bias = MakeBias(type, c, &seed, &bias);
    for (int64_t rows = 1; rows <= kWeightOnlyGemvMaxRows; ++rows) {
      // x_stride == k: 16-byte staging when k % 8 == 0; k + 6: pair by pair.
      for (int64_t x_stride : {c.k, c.k + 6}) {
        CheckGemv(type, c, *layer, bias, d_bias.get(), rows, x_stride, 0, seed++);
        if (HasFatalFailure()) return;
      }
    }
  }
}

// Rows whose x exceeds the two-blocks-an-SM budget (9..16 rows of k = 4096
// or 8 rows of 8192): x in the device's larger per-block shared memory (one
// block an SM), and x read from global memory when the launch is capped at
// that budget; both against the reference, at the plan's slices and at 8.
TEST_P(WeightOnlyGemmCudaTest, GemvMatchesReferenceWithXInLargeSharedOrGlobal) {
  if (GemvSharedLimit(0) <= kWeightOnlyGemvSharedBudget) {
    GTEST_SKIP() << "this GPU's shared memory per block holds no more than the two-block budget";
  }
  const ScalarType type = GetParam();
  const Config configs[] = {
      {4, 4096, 4096, 128, true, true, false},  // Llama-2-7B o, symmetric g128
      {4, 300, 4096, 32, false, true, true},    // g32 asymmetric: 12 KB of scales and zeros a block at 8 tiles
      {8, 200, 4096, 4096, true, true, false},  // per channel 8 bits
      {4, 130, 8192, 128, false, false, true},  // fp32 scales; 8 rows of x already take 128 KB
  };
  uint32_t seed = 1300;
  for (const Config& c : configs) {
    auto layer = MakeLayer(c, seed++);
    std::vector<float> bias;
    std::unique_ptr<DeviceArray> d_bias = MakeBias(type, c, &seed, &bias);
    const int32_t sms = DeviceSms();
    int32_t large = 0;
    for (int64_t rows : {7, 8, 9, 12, 16}) {
      for (int64_t cap : {int64_t(0), kWeightOnlyGemvSharedBudget}) {
        for (int32_t slices : {0, 8}) {
          const WeightOnlyGemvPlan plan = PlanWeightOnlyGemv(layer->device.layout, rows, layer->device.half_scales,
                                                             layer->device.zeros != nullptr, sms, slices,
                                                             GemvSharedLimit(cap));
          if (!plan.ok()) continue;
          if (plan.shared_bytes > kWeightOnlyGemvSharedBudget) ++large;
          CheckGemv(type, c, *layer, bias, d_bias.get(), rows, c.k, slices, seed++, cap);
          if (HasFatalFailure()) return;
        }
      }
    }
    EXPECT_GT(large, 0) << Describe(c) << ": no launch planned x in more than the two-block budget";
  }
}

// Every slice count (1, 2, 4, 8 warps per tile; 8, 4, 2, 1 tiles per block)
// on layers whose chunks do not divide evenly, whatever the plan would pick.
TEST_P(WeightOnlyGemmCudaTest, GemvMatchesReferenceAtEverySliceCount) {
  const ScalarType type = GetParam();
  const Config configs[] = {
      {4, 133, 1088, 64, false, true, true},   // 17 chunks, 9 tiles (the last partial)
      {8, 70, 2080, 32, true, false, false},   // 65 chunks, fp32 scales
      {4, 50, 800, 32, false, true, false},    // g32: two groups per chunk
      {8, 40, 4096, 16, false, true, true},    // 8 bits g16: two groups per chunk
      {4, 300, 11008, 128, false, true, true}, // x from global memory from 5 rows on
  };
  uint32_t seed = 900;
  for (const Config& c : configs) {
    auto layer = MakeLayer(c, seed++);
    std::vector<float> bias;
    std::unique_ptr<DeviceArray> d_bias = MakeBias(type, c, &seed, &bias);
    const int32_t sms = DeviceSms();
    int32_t ran = 0;
    for (int32_t slices : {1, 2, 4, 8}) {
      for (int64_t rows : {1, 3, 8, 9, 16}) {
        // A forced slice count whose block would stage more scales than the
        // shared budget has no plan, and the launch declines it: only the
        // counts that plan are run.
        const WeightOnlyGemvPlan plan = PlanWeightOnlyGemv(layer->device.layout, rows, layer->device.half_scales,
                                                           layer->device.zeros != nullptr, sms, slices);
        if (!plan.ok()) continue;
        CheckGemv(type, c, *layer, bias, d_bias.get(), rows, c.k, slices, seed++);
        if (HasFatalFailure()) return;
        ++ran;
      }
    }
    EXPECT_GE(ran, 5) << Describe(c) << ": fewer than one slice count planned for every row count";
  }
}

TEST_P(WeightOnlyGemmCudaTest, DequantizesExactly) {
  const ScalarType type = GetParam();
  uint32_t seed = 100;
  for (const Config& c : kConfigs) {
    auto layer = MakeLayer(c, seed++);
    DeviceArray dw(type, size_t(c.n * c.k));
    ASSERT_EQ(LaunchWeightOnlyDequantize(type, layer->device, dw.data(), nullptr), cudaSuccess) << Describe(c);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << Describe(c);
    std::vector<float> want(size_t(c.n * c.k));
    DequantizeWeightOnlyReference(layer->params, layer->codes.data(), layer->scales.data(), layer->zeros.data(),
                                  want.data());
    const std::vector<float> got = dw.Download();
    int64_t mismatches = 0;
    for (int64_t i = 0; i < c.n * c.k; ++i) {
      if (got[i] != testing::Round(type, want[i]) && mismatches++ < 3) {
        ADD_FAILURE() << Describe(c) << ": row " << i / c.k << ", column " << i % c.k << ": got " << got[i] << ", want "
                      << testing::Round(type, want[i]);
      }
    }
    EXPECT_EQ(mismatches, 0) << Describe(c);
  }
}

// An act-order layer: x's columns gathered by the permutation, then the GEMM,
// equals the reference that gathers by input_order itself.
TEST_P(WeightOnlyGemmCudaTest, GathersActOrderColumns) {
  const ScalarType type = GetParam();
  const Config c{4, 48, 256, 32, false, true, false};
  auto layer = MakeLayer(c, 7);
  std::vector<int32_t> order(size_t(c.k));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937 rng(9);
  std::shuffle(order.begin(), order.end(), rng);
  DeviceVector<int32_t> d_order(order);
  for (int64_t rows : {1, 5, 19, 40}) {
    auto x = Normal(size_t(rows * c.k), uint32_t(rows));
    DeviceArray dx(type, x.size()), gathered(type, x.size()), dy(type, size_t(rows * c.n));
    dx.Upload(x);
    ASSERT_EQ(LaunchGatherColumns(type, rows, c.k, d_order.data(), dx.data(), c.k, gathered.data(), c.k, nullptr),
              cudaSuccess);
    const std::vector<float> g = [&] {
      cudaDeviceSynchronize();
      return gathered.Download();
    }();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < c.k; ++j) {
        ASSERT_EQ(g[r * c.k + j], x[r * c.k + order[j]]) << "row " << r << ", column " << j;
      }
    }
    const WeightOnlyGemmParams p{rows, c.k, c.n};
    ASSERT_EQ(LaunchWeightOnlyGemm(type, layer->device, p, gathered.data(), nullptr, dy.data(), nullptr), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<float> want(size_t(rows * c.n));
    WeightOnlyGemmReference(layer->params, rows, x.data(), c.k, order.data(), layer->codes.data(), layer->scales.data(),
                            layer->zeros.data(), nullptr, want.data(), c.n);
    const std::vector<float> got = dy.Download();
    EXPECT_LT(testing::RelativeError(got, want), testing::Tolerance(type))
        << "rows " << rows << ": " << Worst(got, want, rows, c.n, c.n);
    if (rows <= kWeightOnlyGemvMaxRows) {
      DeviceArray dz(type, size_t(rows * c.n));
      ASSERT_EQ(LaunchWeightOnlyGemv(type, layer->device, p, gathered.data(), nullptr, dz.data(), nullptr),
                cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const std::vector<float> gemv = dz.Download();
      EXPECT_LT(testing::RelativeError(gemv, want), testing::Tolerance(type))
          << "GEMV, rows " << rows << ": " << FirstMismatch(gemv, want, rows, c.n, c.n, 4 * testing::Tolerance(type));
    }
  }
}

TEST_P(WeightOnlyGemmCudaTest, DeclinesWhatItCannotRun) {
  const ScalarType type = GetParam();
  auto layer = MakeLayer({4, 16, 64, 32, true, true, false}, 3);
  DeviceArray buffer(type, 4096);
  const void* x = buffer.data();
  const WeightOnlyGemmParams ok{1, 64, 16};
  EXPECT_TRUE(WeightOnlyGemmSupported(type, layer->device, ok, x));
  EXPECT_FALSE(WeightOnlyGemmSupported(ScalarType::kF32, layer->device, ok, x));
  WeightOnlyGemmParams bad = ok;
  bad.rows = kWeightOnlyGemmMaxRows + 1;
  EXPECT_FALSE(WeightOnlyGemmSupported(type, layer->device, bad, x));
  bad = ok;
  bad.x_row_stride = 65;
  EXPECT_FALSE(WeightOnlyGemmSupported(type, layer->device, bad, x));
  bad = ok;
  bad.y_row_stride = 15;
  EXPECT_FALSE(WeightOnlyGemmSupported(type, layer->device, bad, x));
  EXPECT_FALSE(WeightOnlyGemmSupported(type, layer->device, ok, static_cast<const char*>(x) + 2));
  EXPECT_EQ(LaunchWeightOnlyGemm(type, layer->device, bad, x, nullptr, buffer.data(), nullptr), cudaErrorNotSupported);
  const WeightOnlyGemmParams empty{0, 64, 16};
  EXPECT_EQ(LaunchWeightOnlyGemm(type, layer->device, empty, nullptr, nullptr, nullptr, nullptr), cudaSuccess);
}

TEST_P(WeightOnlyGemmCudaTest, GemvDeclinesWhatItCannotRun) {
  const ScalarType type = GetParam();
  auto layer = MakeLayer({4, 16, 64, 32, true, true, false}, 3);
  DeviceArray buffer(type, 4096);
  const void* x = buffer.data();
  const WeightOnlyGemmParams ok{1, 64, 16};
  EXPECT_TRUE(WeightOnlyGemvSupported(type, layer->device, ok, x));
  EXPECT_FALSE(WeightOnlyGemvSupported(ScalarType::kF32, layer->device, ok, x));
  WeightOnlyGemmParams bad = ok;
  bad.rows = kWeightOnlyGemvMaxRows + 1;
  EXPECT_FALSE(WeightOnlyGemvSupported(type, layer->device, bad, x));
  bad = ok;
  bad.x_row_stride = 65;
  EXPECT_FALSE(WeightOnlyGemvSupported(type, layer->device, bad, x));
  bad = ok;
  bad.x_row_stride = 62;
  EXPECT_FALSE(WeightOnlyGemvSupported(type, layer->device, bad, x));
  bad = ok;
  bad.y_row_stride = 15;
  EXPECT_FALSE(WeightOnlyGemvSupported(type, layer->device, bad, x));
  EXPECT_FALSE(WeightOnlyGemvSupported(type, layer->device, ok, static_cast<const char*>(x) + 2));
  WeightOnlyDeviceWeight misaligned = layer->device;
  misaligned.scales = static_cast<const char*>(misaligned.scales) + 2;
  EXPECT_FALSE(WeightOnlyGemvSupported(type, misaligned, ok, x));
  EXPECT_EQ(LaunchWeightOnlyGemv(type, layer->device, bad, x, nullptr, buffer.data(), nullptr), cudaErrorNotSupported);
  EXPECT_EQ(LaunchWeightOnlyGemv(type, layer->device, ok, x, nullptr, buffer.data(), nullptr, true, 3),
            cudaErrorNotSupported);
  const WeightOnlyGemmParams empty{0, 64, 16};
  EXPECT_EQ(LaunchWeightOnlyGemv(type, layer->device, empty, nullptr, nullptr, nullptr, nullptr), cudaSuccess);
}

INSTANTIATE_TEST_SUITE_P(Types, WeightOnlyGemmCudaTest, ::testing::Values(ScalarType::kF16, ScalarType::kBF16),
                         [](const auto& info) { return info.param == ScalarType::kF16 ? "f16" : "bf16"; });

}  // namespace
}  // namespace tern::kernels
