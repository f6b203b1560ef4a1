// The CPU backend's linear layer of every weight scheme against a direct
// fp32/integer computation of the same quantized arithmetic
// (kernels/gemm/quant_gemm.h), written out here loop by loop; the
// round-to-nearest quantizer against hand-computed codes; fusing parts.
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/common/float8.h"
#include "kernels/gemm/quant_gemm.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/model/quantized_formats.h"
#include "runtime/model/quantized_weight.h"
#include "runtime/model/rtn_quantizer.h"
#include "runtime/model/weight_scheme.h"

namespace tern::runtime {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> out(n);
  for (auto& v : out) v = normal(rng);
  return out;
}

LinearScheme Scheme(const std::string& text) {
  auto scheme = ParseLinearScheme(text);
  EXPECT_TRUE(scheme.ok()) << scheme.status();
  return scheme.ok() ? *scheme : LinearScheme{};
}

QuantizedLinear Rtn(const std::string& scheme, int64_t out, int64_t in, uint32_t seed, bool bias) {
  RtnOptions options;
  options.scheme = Scheme(scheme);
  auto q = QuantizeRtn(Random(size_t(out * in), seed, 0.05f), out, in, options,
                       bias ? Random(size_t(out), seed + 1, 0.1f) : std::vector<float>{});
  EXPECT_TRUE(q.ok()) << q.status();
  return *q;
}

// Runs the CPU backend's linear layer on x [rows, in] (row stride in + 3).
std::vector<float> RunCpu(const QuantizedLinear& q, const std::vector<float>& x, int64_t rows) {
  CpuBackend backend;
  auto linear = backend.PrepareQuantizedLinear(q);
  EXPECT_TRUE(linear.ok()) << linear.status();
  const int64_t in = q.in_features, stride = in + 3;
  std::vector<float> padded(size_t(std::max<int64_t>(rows, 1) * stride), NAN);
  for (int64_t r = 0; r < rows; ++r) std::copy_n(&x[r * in], in, &padded[r * stride]);
  std::vector<float> y(size_t(std::max<int64_t>(rows, 1) * q.out_features), NAN);
  backend.Linear(Tensor{padded.data(), DType::kF32, rows, in, stride}, **linear,
                 Tensor{y.data(), DType::kF32, rows, q.out_features, q.out_features});
  y.resize(size_t(rows * q.out_features));
  return y;
}

// W[n, i] = (code - zero) * scale in input order, decoded here from tern's
// bytes without the library's helpers.
std::vector<double> DirectWeightOnly(const QuantizedLinear& q) {
  const int64_t out = q.out_features, in = q.in_features, groups = in / q.group_size;
  const bool four = q.scheme.scheme == WeightScheme::kW4A16;
  std::vector<double> w(size_t(out * in));
  for (int64_t n = 0; n < out; ++n) {
    for (int64_t j = 0; j < in; ++j) {
      const int code = four ? (q.weight[(n * in + j) / 2] >> (((n * in + j) % 2) * 4)) & 0xf : q.weight[n * in + j];
      const int64_t g = j / q.group_size;
      const int64_t i = q.input_order.empty() ? j : q.input_order[j];
      w[n * in + i] = double(float(code - int(q.zeros[n * groups + g])) * q.scales[n * groups + g]);
    }
  }
  return w;
}

TEST(QuantizedLinearTest, WeightOnlyIsTheGemmOfTheDequantizedWeight) {
  const int64_t rows = 5;
  for (const char* scheme : {"w4a16-g32", "w4a16-g64-asym", "w8a16", "w8a16-g32-asym"}) {
    QuantizedLinear q = Rtn(scheme, 24, 128, 11, /*bias=*/true);
    // An act-order permutation (what a desc_act checkpoint becomes at load).
    q.input_order.resize(128);
    for (int32_t j = 0; j < 128; ++j) q.input_order[j] = (j * 37 + 5) % 128;
    const std::vector<float> x = Random(rows * 128, 3);
    const std::vector<double> w = DirectWeightOnly(q);
    const std::vector<float> y = RunCpu(q, x, rows);
    std::vector<float> reference(rows * 24);
    kernels::WeightOnlyParams p{24, 128, q.group_size, WeightSchemeBits(q.scheme.scheme)};
    kernels::WeightOnlyGemmReference(p, rows, x.data(), 128, q.input_order.data(), q.weight.data(), q.scales.data(),
                                     q.zeros.data(), q.bias.data(), reference.data(), 24);
    for (int64_t m = 0; m < rows; ++m) {
      for (int64_t n = 0; n < 24; ++n) {
        double sum = 0, magnitude = 0;
        for (int64_t i = 0; i < 128; ++i) {
          sum += double(x[m * 128 + i]) * w[n * 128 + i];
          magnitude += std::fabs(double(x[m * 128 + i]) * w[n * 128 + i]);
        }
        const double expected = sum + q.bias[n];
        EXPECT_NEAR(y[m * 24 + n], expected, 1e-6 * magnitude + 1e-7) << scheme << " " << m << "," << n;
        EXPECT_NEAR(reference[m * 24 + n], expected, 1e-6 * magnitude + 1e-7) << scheme;
      }
    }
  }
}

// The W8A8 arithmetic of kernels/gemm/quant_gemm.h, written out; `magnitude`
// (if given) receives s * w_scale * sum |products| per output.
std::vector<float> DirectW8A8(const QuantizedLinear& q, const std::vector<float>& x, int64_t rows,
                              std::vector<float>* magnitude = nullptr) {
  const int64_t out = q.out_features, in = q.in_features;
  const bool fp8 = q.scheme.scheme == WeightScheme::kW8A8Fp8;
  const float qmax = fp8 ? 448.0f : 127.0f;
  std::vector<float> y(size_t(rows * out));
  if (magnitude != nullptr) magnitude->assign(y.size(), 0.0f);
  for (int64_t m = 0; m < rows; ++m) {
    std::vector<float> xs(in);
    float absmax = 0;
    for (int64_t i = 0; i < in; ++i) {
      xs[i] = q.input_smoothing.empty() ? x[m * in + i] : x[m * in + i] / q.input_smoothing[i];
      absmax = std::max(absmax, std::fabs(xs[i]));
    }
    float s, inv;
    if (q.input_scale > 0) {
      s = q.input_scale;
      inv = 1.0f / s;
    } else if (!fp8) {
      s = absmax / qmax;
      inv = absmax > 0 ? qmax / absmax : 0.0f;
    } else {
      s = std::max(absmax / qmax, 1.0f / (448.0f * 512.0f));
      inv = 1.0f / s;
    }
    std::vector<double> xq(in);
    for (int64_t i = 0; i < in; ++i) {
      xq[i] = fp8 ? double(kernels::Fp8E4M3ToFloat(kernels::FloatToFp8E4M3(xs[i] * inv)))
                  : double(std::min(127.0f, std::max(-128.0f, std::nearbyint(xs[i] * inv))));
    }
    for (int64_t n = 0; n < out; ++n) {
      double acc = 0, abs_acc = 0;
      for (int64_t i = 0; i < in; ++i) {
        const uint8_t b = q.weight[n * in + i];
        const double product = xq[i] * (fp8 ? double(kernels::Fp8E4M3ToFloat(b)) : double(int8_t(b)));
        acc += product;
        abs_acc += std::fabs(product);
      }
      if (magnitude != nullptr) (*magnitude)[m * out + n] = float(s * q.scales[n] * abs_acc);
      y[m * out + n] = s * (q.scales[n] * float(acc)) + (q.bias.empty() ? 0.0f : q.bias[n]);
    }
  }
  return y;
}

TEST(QuantizedLinearTest, Int8W8A8SumsExactlyAndAppliesScalesInTheEpilogue) {
  // in = 1500 spans two of the CPU's exact fp32 blocks of 1024 inputs.
  for (int64_t in : {64, 1500}) {
    QuantizedLinear q = Rtn("int8", 17, in, 21, /*bias=*/true);
    for (int64_t rows : {0, 1, 6}) {
      std::vector<float> x = Random(size_t(rows * in), 5, 3.0f);
      if (rows == 6) std::fill_n(&x[2 * in], in, 0.0f);  // an all-zero row: scale 0, output = bias
      const std::vector<float> y = RunCpu(q, x, rows);
      const std::vector<float> expected = DirectW8A8(q, x, rows);
      ASSERT_EQ(y.size(), expected.size());
      for (size_t i = 0; i < y.size(); ++i)
        ASSERT_EQ(y[i], expected[i]) << "in " << in << " rows " << rows << " at " << i;
    }
  }
  // Static activation scale (values beyond it clamp) and smoothing factors.
  QuantizedLinear q = Rtn("int8", 9, 40, 31, /*bias=*/false);
  q.input_scale = 0.02f;
  q.input_smoothing = Random(40, 8, 0.3f);
  for (auto& f : q.input_smoothing) f = 0.5f + std::fabs(f);
  const std::vector<float> x = Random(3 * 40, 9, 2.0f);
  EXPECT_EQ(RunCpu(q, x, 3), DirectW8A8(q, x, 3));
}

TEST(QuantizedLinearTest, Fp8W8A8MatchesTheQuantizedProductsSummedInFp32) {
  for (const bool static_scale : {false, true}) {
    QuantizedLinear q = Rtn("fp8", 13, 200, 41, /*bias=*/true);
    if (static_scale) q.input_scale = 0.01f;
    const std::vector<float> x = Random(4 * 200, 12, 2.0f);
    const std::vector<float> y = RunCpu(q, x, 4);
    std::vector<float> magnitude;
    const std::vector<float> expected = DirectW8A8(q, x, 4, &magnitude);
    for (size_t i = 0; i < y.size(); ++i) EXPECT_NEAR(y[i], expected[i], 1e-6 * magnitude[i] + 1e-7) << i;
  }
}

TEST(QuantizedLinearTest, TakesActivationsAlreadyQuantizedWithRowScales) {
  for (const char* scheme : {"int8", "fp8"}) {
    const bool fp8 = std::string(scheme) == "fp8";
    QuantizedLinear q = Rtn(scheme, 8, 48, 51, /*bias=*/true);
    const std::vector<float> x = Random(3 * 48, 13);
    // Quantized as a fused producer (RMSNorm, SwiGLU) would write them.
    std::vector<uint8_t> xq(3 * 48);
    std::vector<float> row_scales(3);
    kernels::ActivationQuantParams p{
        fp8 ? kernels::ActivationQuant::kFp8E4M3 : kernels::ActivationQuant::kInt8, 3, 48, 48, 0.0f, nullptr};
    kernels::QuantizeActivationsReference(p, x.data(), xq.data(), row_scales.data());
    CpuBackend backend;
    auto linear = backend.PrepareQuantizedLinear(q);
    ASSERT_TRUE(linear.ok());
    std::vector<float> y(3 * 8);
    Tensor input{xq.data(), fp8 ? DType::kF8E4M3 : DType::kI8, 3, 48, 48, row_scales.data()};
    backend.Linear(input.Rows(1, 2), **linear, Tensor{y.data() + 8, DType::kF32, 2, 8, 8});
    backend.Linear(input.Rows(0, 1), **linear, Tensor{y.data(), DType::kF32, 1, 8, 8});
    EXPECT_EQ(y, RunCpu(q, x, 3)) << scheme;
  }
}

TEST(RtnQuantizerTest, MatchesHandComputedCodes) {
  RtnOptions options;
  options.scheme = Scheme("w4a16-channel");
  // Symmetric 4 bits: scale = 2 * 1 / 15 rounded to fp16 = 0.13330078125, zero 8.
  auto sym = QuantizeRtn(std::vector<float>{-1, -0.5f, 0, 0.5f, 1, 0.25f, -0.25f, 0.75f}, 1, 8, options);
  ASSERT_TRUE(sym.ok()) << sym.status();
  EXPECT_EQ(sym->scales, std::vector<float>{0.13330078125f});
  EXPECT_EQ(sym->zeros, std::vector<uint8_t>{8});
  EXPECT_EQ(UnpackTernCodes(sym->weight, 1, 8, 4), (std::vector<uint8_t>{0, 4, 8, 12, 15, 10, 6, 14}));

  // Asymmetric: lo = 0, hi = 0.4, scale = 0.4 / 15 in fp16, zero 0 (or 1
  // when the format cannot hold 0).
  options.scheme = Scheme("w4a16-channel-asym");
  auto asym = QuantizeRtn(std::vector<float>{0.1f, 0.2f, 0.3f, 0.4f}, 1, 4, options);
  ASSERT_TRUE(asym.ok());
  EXPECT_EQ(asym->scales[0], HalfToFloat(FloatToHalf(0.4f / 15.0f)));
  EXPECT_EQ(asym->zeros, std::vector<uint8_t>{0});
  EXPECT_EQ(UnpackTernCodes(asym->weight, 1, 4, 4), (std::vector<uint8_t>{4, 7, 11, 15}));
  options.min_zero = 1;
  auto shifted = QuantizeRtn(std::vector<float>{0.1f, 0.2f, 0.3f, 0.4f}, 1, 4, options);
  EXPECT_EQ(shifted->zeros, std::vector<uint8_t>{1});
  EXPECT_EQ(UnpackTernCodes(shifted->weight, 1, 4, 4), (std::vector<uint8_t>{5, 8, 12, 15}));

  // INT8 W8A8: scale = absmax / 127.
  options = RtnOptions{};
  options.scheme = Scheme("int8");
  auto int8 = QuantizeRtn(std::vector<float>{0.9f, -2.0f, 0.3f, 0.0f}, 1, 4, options);
  ASSERT_TRUE(int8.ok());
  EXPECT_EQ(int8->scales[0], 2.0f / 127.0f);
  EXPECT_EQ(int8->weight, (std::vector<uint8_t>{57, uint8_t(-127), 19, 0}));
  // FP8: scale = absmax / 448; 1 / (4 / 448) = 112 = 1.75 * 2^6 -> 0x6e.
  options.scheme = Scheme("fp8");
  auto fp8 = QuantizeRtn(std::vector<float>{4.0f, -4.0f, 1.0f, 0.0f}, 1, 4, options);
  ASSERT_TRUE(fp8.ok());
  EXPECT_EQ(fp8->weight, (std::vector<uint8_t>{0x7e, 0xfe, 0x6e, 0x00}));

  options.scheme = Scheme("w4a16-g32");
  EXPECT_EQ(QuantizeRtn(std::vector<float>(48), 1, 48, options).status().message(),
            "group size 32 does not divide in_features 48");
}

TEST(QuantizedLinearTest, FusesPartsThatAgreeAndNamesThoseThatDoNot) {
  QuantizedLinear a = Rtn("int8", 4, 32, 61, false), b = Rtn("int8", 6, 32, 62, false);
  a.input_scale = 0.5f;
  b.input_scale = 0.75f;
  auto fused = ConcatQuantizedLinears({a, b}, {"q", "k"});
  ASSERT_TRUE(fused.ok()) << fused.status();
  EXPECT_EQ(fused->out_features, 10);
  EXPECT_EQ(fused->input_scale, 0.75f);  // the fused layer quantizes its input once, with the largest scale
  EXPECT_TRUE(ValidateQuantizedLinear(*fused, "qk").ok());
  const std::vector<float> w = DequantizeLinear(*fused), wa = DequantizeLinear(a), wb = DequantizeLinear(b);
  EXPECT_TRUE(std::equal(wa.begin(), wa.end(), w.begin()));
  EXPECT_TRUE(std::equal(wb.begin(), wb.end(), w.begin() + wa.size()));

  QuantizedLinear c = Rtn("w4a16-g32", 8, 64, 63, false), d = Rtn("w4a16-g64", 8, 64, 64, false);
  auto mismatch = ConcatQuantizedLinears({c, d}, {"gate", "up"});
  EXPECT_EQ(mismatch.status().message(),
            "up and gate differ in scheme (w4a16-g64 vs w4a16-g32); tern fuses them into one linear layer, so they "
            "must agree");
  QuantizedLinear e = c;
  e.zeros[3] = 17;
  EXPECT_EQ(ValidateQuantizedLinear(e, "L").message(), "L: zero code 17 is outside [0, 16]");
}

}  // namespace
}  // namespace tern::runtime
