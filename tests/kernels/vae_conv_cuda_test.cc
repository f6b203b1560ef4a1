// The implicit-GEMM 3x3 convolution (kernels/dit/vae_conv.h) against a
// float64 convolution of the same rounded fp16/bf16 inputs: VAE channel
// counts, a shape that is no multiple of the tiles, one pixel, strided rows;
// both tile widths bitwise equal; a sample bitwise the same alone and in a
// batch of three; the shapes it refuses. Label gpu: the kernel tests skip
// without a GPU (the refusals and the tile choice are host code and run).
#include "kernels/dit/vae_conv.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/kernels/cuda_test_util.h"

namespace tern::kernels {
namespace {

using testing::DeviceArray;

struct ConvCase {
  int32_t height, width, in_channels, out_channels;
  int64_t batch;
  int32_t x_pad = 0, out_pad = 0;  // extra elements per row beyond the channels
  std::string Name() const {
    return absl::StrCat(height, "x", width, " ", in_channels, "->", out_channels, " B=", batch, " strides +", x_pad,
                        " +", out_pad);
  }
  int64_t rows() const { return batch * height * width; }
  int64_t x_stride() const { return in_channels + x_pad; }
  int64_t out_stride() const { return out_channels + out_pad; }
  DitConvImplicitParams Params(int32_t tile_n = 0) const {
    DitConvImplicitParams p;
    p.batch = batch;
    p.dims = {height, width, in_channels};
    p.out_channels = out_channels;
    p.x_stride = x_stride();
    p.out_stride = out_stride();
    p.tile_n = tile_n;
    return p;
  }
};

std::vector<float> Uniform(size_t n, uint32_t seed, float bound) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-bound, bound);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// out [rows, C_out] dense, in float64, from x [rows, x_stride], w [C_out,
// 9 * C_in] in (ky, kx, channel) order, bias [C_out].
std::vector<double> ReferenceConv(const ConvCase& c, const std::vector<float>& x, const std::vector<float>& w,
                                  const std::vector<float>& bias) {
  const int64_t k_total = int64_t(9) * c.in_channels;
  std::vector<double> out(size_t(c.rows() * c.out_channels));
  std::vector<double> patch(static_cast<size_t>(k_total));
  for (int64_t b = 0; b < c.batch; ++b) {
    for (int32_t y = 0; y < c.height; ++y) {
      for (int32_t xx = 0; xx < c.width; ++xx) {
        for (int32_t t = 0; t < 9; ++t) {
          const int32_t sy = y + t / 3 - 1, sx = xx + t % 3 - 1;
          const bool inside = sy >= 0 && sy < c.height && sx >= 0 && sx < c.width;
          const float* src = inside ? &x[size_t(((b * c.height + sy) * c.width + sx) * c.x_stride())] : nullptr;
          for (int32_t ch = 0; ch < c.in_channels; ++ch) patch[size_t(t * c.in_channels + ch)] = inside ? src[ch] : 0.0;
        }
        const int64_t m = (b * c.height + y) * c.width + xx;
        for (int32_t o = 0; o < c.out_channels; ++o) {
          const float* row = &w[size_t(o * k_total)];
          double sum = 0.0;
          for (int64_t k = 0; k < k_total; ++k) sum += double(row[k]) * patch[size_t(k)];
          out[size_t(m * c.out_channels + o)] = sum + double(bias[size_t(o)]);
        }
      }
    }
  }
  return out;
}

// A convolution's device inputs, rounded to the type (the host vectors hold
// the rounded values afterwards).
struct ConvInputs {
  ConvInputs(ScalarType type, const ConvCase& c, uint32_t seed)
      : x_host(Uniform(size_t(c.rows() * c.x_stride()), seed, 1.0f)),
        // About unit outputs: weights of a fan-in-scaled initialization.
        w_host(Uniform(size_t(c.out_channels) * 9 * c.in_channels, seed + 1,
                       float(1.0 / std::sqrt(3.0 * c.in_channels)))),
        bias_host(Uniform(size_t(c.out_channels), seed + 2, 0.5f)),
        x(type, x_host.size()),
        w(type, w_host.size()),
        bias(type, bias_host.size()) {
    x.Upload(x_host);
    w.Upload(w_host);
    bias.Upload(bias_host);
  }
  std::vector<float> x_host, w_host, bias_host;
  DeviceArray x, w, bias;
};

constexpr float kSentinel = 7.0f;  // what out's padding columns hold before and after

// Runs the kernel into a fresh output (padding columns set to kSentinel)
// and returns it [rows, out_stride].
std::vector<float> RunConv(ScalarType type, const ConvCase& c, ConvInputs& in, int32_t tile_n) {
  std::vector<float> init(size_t(c.rows() * c.out_stride()), kSentinel);
  DeviceArray out(type, init.size());
  out.Upload(init);
  const DitConvImplicitParams p = c.Params(tile_n);
  EXPECT_TRUE(DitConvImplicitSupported(type, p, in.x.data(), in.w.data(), out.data())) << c.Name();
  EXPECT_EQ(LaunchDitConvImplicit(type, p, in.x.data(), in.w.data(), in.bias.data(), out.data(), nullptr),
            cudaSuccess)
      << c.Name() << " tile " << tile_n;
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess) << c.Name() << " tile " << tile_n;
  return out.Download();
}

class VaeConvCudaTest : public ::testing::TestWithParam<ScalarType> {
 protected:
  void SetUp() override {
    if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  }
  ScalarType type() const { return GetParam(); }
  // |gpu - float64| <= rel |float64| + abs per element: the output's one
  // rounding (bf16 2^-9, fp16 2^-12 relative) with room for fp32 sums.
  double RelativeBound() const { return type() == ScalarType::kBF16 ? 1e-2 : 2e-3; }
  double AbsoluteBound() const { return type() == ScalarType::kBF16 ? 1e-3 : 2e-4; }
};

TEST_P(VaeConvCudaTest, MatchesFloat64Reference) {
  const ConvCase cases[] = {
      {8, 8, 128, 128, 1},
      {16, 16, 512, 512, 2},
      {32, 32, 256, 128, 3},
      {12, 20, 128, 256, 2},          // non-square, no multiple of the 128-pixel tile
      {12, 20, 128, 256, 2, 8, 16},   // the same with strided rows
      {1, 1, 16, 8, 1},               // one pixel: only the centre tap, half a channel chunk
      {9, 7, 40, 136, 3, 8, 8},       // channels no multiple of the 32-channel step or the tiles
  };
  uint32_t seed = 100;
  for (const ConvCase& c : cases) {
    ConvInputs in(type(), c, seed += 10);
    const std::vector<double> want = ReferenceConv(c, in.x_host, in.w_host, in.bias_host);
    const std::vector<float> got = RunConv(type(), c, in, 0);
    double worst = 0.0;
    int64_t failures = 0, padding_changed = 0;
    for (int64_t m = 0; m < c.rows(); ++m) {
      for (int32_t o = 0; o < c.out_channels; ++o) {
        const double w = want[size_t(m * c.out_channels + o)];
        const double g = got[size_t(m * c.out_stride() + o)];
        const double excess = std::abs(g - w) - (RelativeBound() * std::abs(w) + AbsoluteBound());
        worst = std::max(worst, std::abs(g - w));
        if (!(excess <= 0.0)) {
          if (failures++ < 5) ADD_FAILURE() << c.Name() << " pixel row " << m << " channel " << o << ": " << g
                                            << " vs float64 " << w;
        }
      }
      for (int64_t o = c.out_channels; o < c.out_stride(); ++o) {
        padding_changed += got[size_t(m * c.out_stride() + o)] != kSentinel;
      }
    }
    EXPECT_EQ(failures, 0) << c.Name() << " " << testing::Name(type()) << ": max |error| " << worst;
    EXPECT_EQ(padding_changed, 0) << c.Name() << ": the kernel wrote past C_out";
    // The reduction is the same whatever the tile width.
    for (int32_t tile_n : {64, 128}) {
      EXPECT_EQ(RunConv(type(), c, in, tile_n), got) << c.Name() << ": tile width " << tile_n << " differs";
    }
  }
}

TEST_P(VaeConvCudaTest, BatchedSampleEqualsSampleAlone) {
  for (ConvCase batched : {ConvCase{12, 20, 128, 256, 3}, ConvCase{32, 32, 256, 128, 3}}) {
    ConvInputs in(type(), batched, 7);
    ConvCase alone = batched;
    alone.batch = 1;
    const std::vector<float> all = RunConv(type(), batched, in, 0);
    // Sample 1's pixels as a batch of one, with the same weights and bias.
    const int64_t pixels = int64_t(batched.height) * batched.width;
    const size_t sample_elements = size_t(pixels * batched.x_stride());
    std::vector<float> sample(in.x_host.begin() + sample_elements, in.x_host.begin() + 2 * sample_elements);
    ConvInputs in_alone(type(), alone, 7);
    in_alone.x.Upload(sample);
    in_alone.w.Upload(in.w_host);
    in_alone.bias.Upload(in.bias_host);
    const std::vector<float> one = RunConv(type(), alone, in_alone, 0);
    const size_t out_begin = size_t(pixels * batched.out_stride());
    const std::vector<float> all_sample1(all.begin() + out_begin, all.begin() + out_begin + one.size());
    EXPECT_EQ(all_sample1, one) << batched.Name() << ": sample 1 of 3 differs from the sample alone";
  }
}

INSTANTIATE_TEST_SUITE_P(Types, VaeConvCudaTest, ::testing::Values(ScalarType::kF16, ScalarType::kBF16),
                         [](const auto& info) { return std::string(testing::Name(info.param)); });

// Host checks: no device needed.
void* FakeDevicePointer(uintptr_t address) { return reinterpret_cast<void*>(address); }

TEST(VaeConvImplicitTest, RefusesUnsupportedShapes) {
  void* x = FakeDevicePointer(0x10000);
  void* w = FakeDevicePointer(0x20000);
  void* out = FakeDevicePointer(0x30000);
  const ConvCase vae{64, 64, 128, 128, 2};
  EXPECT_TRUE(DitConvImplicitSupported(ScalarType::kBF16, vae.Params(), x, w, out));
  EXPECT_TRUE(DitConvImplicitSupported(ScalarType::kF16, vae.Params(), x, w, out));

  // conv_in: 4 latent channels.
  const ConvCase conv_in{64, 64, 4, 512, 1};
  EXPECT_FALSE(DitConvImplicitSupported(ScalarType::kBF16, conv_in.Params(), x, w, out));
  EXPECT_EQ(LaunchDitConvImplicit(ScalarType::kBF16, conv_in.Params(), x, w, nullptr, out, nullptr),
            cudaErrorInvalidValue);
  // conv_out: 3 output channels.
  const ConvCase conv_out{64, 64, 128, 3, 1};
  EXPECT_FALSE(DitConvImplicitSupported(ScalarType::kBF16, conv_out.Params(), x, w, out));
  EXPECT_EQ(LaunchDitConvImplicit(ScalarType::kBF16, conv_out.Params(), x, w, nullptr, out, nullptr),
            cudaErrorInvalidValue);
  // fp32, odd strides, misaligned pointers, an unknown tile width, no pixels.
  EXPECT_FALSE(DitConvImplicitSupported(ScalarType::kF32, vae.Params(), x, w, out));
  DitConvImplicitParams strided = vae.Params();
  strided.x_stride = 132;
  EXPECT_FALSE(DitConvImplicitSupported(ScalarType::kBF16, strided, x, w, out));
  strided = vae.Params();
  strided.out_stride = 140;
  EXPECT_FALSE(DitConvImplicitSupported(ScalarType::kBF16, strided, x, w, out));
  EXPECT_FALSE(DitConvImplicitSupported(ScalarType::kBF16, vae.Params(), FakeDevicePointer(0x10008), w, out));
  EXPECT_FALSE(DitConvImplicitSupported(ScalarType::kBF16, vae.Params(), x, FakeDevicePointer(0x20002), out));
  EXPECT_FALSE(DitConvImplicitSupported(ScalarType::kBF16, vae.Params(), x, w, FakeDevicePointer(0x30004)));
  EXPECT_FALSE(DitConvImplicitSupported(ScalarType::kBF16, vae.Params(96), x, w, out));
  DitConvImplicitParams empty_image = vae.Params();
  empty_image.dims.width = 0;
  EXPECT_FALSE(DitConvImplicitSupported(ScalarType::kBF16, empty_image, x, w, out));
  // Batch 0 is fine and launches nothing.
  DitConvImplicitParams none = vae.Params();
  none.batch = 0;
  EXPECT_EQ(LaunchDitConvImplicit(ScalarType::kBF16, none, x, w, nullptr, out, nullptr), cudaSuccess);
}

TEST(VaeConvImplicitTest, TileWidthFollowsTheShape) {
  // 128 output channels: 64-wide tiles; 512 at a 64x64 latent: 128 tiles of
  // 128x128 (too few), so 64-wide; from 128x128 pixels on, 128-wide.
  EXPECT_EQ(DitConvImplicitTileN({512, 512, 128}, 128), 64);
  EXPECT_EQ(DitConvImplicitTileN({64, 64, 512}, 512), 64);
  EXPECT_EQ(DitConvImplicitTileN({128, 128, 512}, 512), 128);
  EXPECT_EQ(DitConvImplicitTileN({256, 256, 512}, 256), 128);
  EXPECT_EQ(DitConvImplicitTileN({8, 8, 16}, 8), 64);
}

}  // namespace
}  // namespace tern::kernels
