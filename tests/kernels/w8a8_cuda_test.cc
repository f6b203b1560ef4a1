// The W8A8 activation quantization against QuantizeActivationsReference, bit
// for bit (codes and row scales): INT8 and FP8, dynamic and static scales,
// with and without smoothing, rows of zeros, values that saturate, strided
// rows, fp16, bf16 and fp32 inputs. And the epilogue against W8A8Epilogue.
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/gemm/quant_gemm.h"
#include "kernels/gemm/w8a8.h"
#include "tests/kernels/cuda_test_util.h"

namespace tern::kernels {
namespace {

using testing::DeviceArray;
using testing::DeviceVector;

class W8A8CudaTest : public ::testing::TestWithParam<ScalarType> {
 protected:
  void SetUp() override {
    if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(W8A8CudaTest, QuantizesActivationsExactly) {
  const ScalarType type = GetParam();
  struct Case {
    ActivationQuant quant;
    float static_scale;
    bool smoothing;
  };
  // Rows the scalar kernel takes (x rows 2020 bytes apart in 16-bit types),
  // and dense rows of 16-byte vectors, longer than the vector kernel holds
  // in registers (6,144 elements of a 16-bit type, 3,072 of fp32).
  struct Geometry {
    int64_t rows, k, x_stride, q_stride;
  };
  for (const Geometry g : {Geometry{7, 1000, 1010, 1024}, Geometry{6, 6400, 6400, 6400}}) {
    for (const Case c : {Case{ActivationQuant::kInt8, 0.0f, false}, Case{ActivationQuant::kInt8, 0.02f, true},
                         Case{ActivationQuant::kFp8E4M3, 0.0f, false}, Case{ActivationQuant::kFp8E4M3, 0.004f, true},
                         Case{ActivationQuant::kFp8E4M3, 0.0f, true}}) {
      const std::string what = std::string(c.quant == ActivationQuant::kInt8 ? "int8" : "fp8") +
                               (c.static_scale > 0 ? " static" : " dynamic") + (c.smoothing ? " smoothed" : "") +
                               " from " + testing::Name(type) + " k " + std::to_string(g.k);
      const int64_t rows = g.rows, k = g.k, x_stride = g.x_stride, q_stride = g.q_stride;
      std::mt19937 rng(uint32_t(c.static_scale * 1000) + c.smoothing);
      std::normal_distribution<float> normal(0.0f, 2.0f);
      std::vector<float> x(size_t(rows * x_stride), 0.0f);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t i = 0; i < k; ++i) x[r * x_stride + i] = r == 3 ? 0.0f : normal(rng);  // row 3: all zeros
      }
      x[5 * x_stride + 17] = 300.0f;  // saturates under a static scale
      std::vector<float> smoothing(static_cast<size_t>(k));
      std::uniform_real_distribution<float> unit(0.25f, 4.0f);
      for (auto& f : smoothing) f = unit(rng);
      DeviceArray dx(type, x.size());
      dx.Upload(x);  // rounded to the type: the reference sees the same values
      DeviceVector<float> dsmooth(smoothing);
      DeviceVector<uint8_t> dq(std::vector<uint8_t>(size_t(rows * q_stride), 0xaa));
      DeviceVector<float> dscales(std::vector<float>(size_t(rows), -1.0f));
      ActivationQuantParams p;
      p.type = c.quant;
      p.rows = rows;
      p.k = k;
      p.x_stride = x_stride;
      p.static_scale = c.static_scale;
      p.smoothing = c.smoothing ? dsmooth.data() : nullptr;
      ASSERT_EQ(
          LaunchQuantizeActivations(type, p, dx.data(), dq.mutable_data(), q_stride, dscales.mutable_data(), nullptr),
          cudaSuccess)
          << what;
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
      std::vector<uint8_t> want_q(size_t(rows * k));
      std::vector<float> want_scales(static_cast<size_t>(rows));
      p.smoothing = c.smoothing ? smoothing.data() : nullptr;
      QuantizeActivationsReference(p, x.data(), want_q.data(), want_scales.data());
      const std::vector<uint8_t> got_q = dq.Download();
      const std::vector<float> got_scales = dscales.Download();
      int mismatches = 0;
      for (int64_t r = 0; r < rows; ++r) {
        EXPECT_EQ(got_scales[r], want_scales[r]) << what << ": row " << r << " scale";
        for (int64_t i = 0; i < k; ++i) {
          if (got_q[r * q_stride + i] != want_q[r * k + i] && mismatches++ < 5) {
            ADD_FAILURE() << what << ": row " << r << ", column " << i << ": code " << int(got_q[r * q_stride + i])
                          << ", want " << int(want_q[r * k + i]) << " (x " << x[r * x_stride + i] << ")";
          }
        }
        for (int64_t i = k; i < q_stride; ++i) ASSERT_EQ(got_q[r * q_stride + i], 0xaa) << what << ": wrote padding";
      }
      EXPECT_EQ(mismatches, 0) << what;
    }
  }
}

TEST_P(W8A8CudaTest, EpilogueScalesAndAddsTheBias) {
  const ScalarType type = GetParam();
  const int64_t rows = 5, n = 77, y_stride = 80;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (bool int32_acc : {false, true}) {
    std::vector<float> acc_f(size_t(rows * n));
    std::vector<int32_t> acc_i(size_t(rows * n));
    for (size_t i = 0; i < acc_f.size(); ++i) {
      acc_i[i] = int32_t(rng() % 200001) - 100000;
      acc_f[i] = int32_acc ? float(acc_i[i]) : 1000.0f * normal(rng);
    }
    std::vector<float> row_scales(static_cast<size_t>(rows)), w_scales(static_cast<size_t>(n)),
        bias(static_cast<size_t>(n));
    for (auto& s : row_scales) s = std::abs(normal(rng)) * 1e-2f;
    for (auto& s : w_scales) s = std::abs(normal(rng)) * 1e-2f;
    for (auto& b : bias) b = normal(rng);
    DeviceVector<float> dacc_f(acc_f), drow(row_scales), dw(w_scales), dbias(bias);
    DeviceVector<int32_t> dacc_i(acc_i);
    DeviceArray dy(type, size_t(rows * y_stride));
    W8A8EpilogueParams p{rows, n, n, y_stride, int32_acc};
    ASSERT_EQ(LaunchW8A8Epilogue(type, p, int32_acc ? static_cast<const void*>(dacc_i.data()) : dacc_f.data(),
                                 drow.data(), dw.data(), dbias.data(), dy.data(), nullptr),
              cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::vector<float> got = dy.Download();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < n; ++c) {
        const float want = W8A8Epilogue(acc_f[r * n + c], row_scales[r], w_scales[c], bias[c]);
        EXPECT_NEAR(got[r * y_stride + c], want, testing::Tolerance(type) * std::max(1.0f, std::abs(want)))
            << (int32_acc ? "int32" : "fp32") << " acc, row " << r << ", feature " << c;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, W8A8CudaTest, ::testing::Values(ScalarType::kF16, ScalarType::kBF16, ScalarType::kF32),
                         [](const auto& info) { return testing::Name(info.param); });

}  // namespace
}  // namespace tern::kernels
