// FastestAlgorithm times every candidate cuBLASLt algorithm of a bf16 GEMM,
// and the one it keeps computes the same product as a CPU reference.
#include "runtime/cuda/cublaslt_autotune.h"

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/cuda/device_probe.h"

namespace tern::runtime {
namespace {

constexpr int64_t kRows = 512, kIn = 384, kOut = 256;

float Bf16Round(float v) { return __bfloat162float(__float2bfloat16(v)); }

class CublasLtAutotuneTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (ListCudaDevices().empty()) GTEST_SKIP() << "no CUDA device";
    ASSERT_EQ(cublasLtCreate(&lt_), CUBLAS_STATUS_SUCCESS);
    ASSERT_EQ(cudaStreamCreate(&stream_), cudaSuccess);
    // y [rows, out] = x [rows, in] W^T, row-major, as the DiT ops lay it out.
    ASSERT_EQ(cublasLtMatmulDescCreate(&desc_, CUBLAS_COMPUTE_32F, CUDA_R_32F), CUBLAS_STATUS_SUCCESS);
    const cublasOperation_t t = CUBLAS_OP_T, n = CUBLAS_OP_N;
    cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof(t));
    cublasLtMatmulDescSetAttribute(desc_, CUBLASLT_MATMUL_DESC_TRANSB, &n, sizeof(n));
    cublasLtMatrixLayoutCreate(&w_layout_, CUDA_R_16BF, kIn, kOut, kIn);
    cublasLtMatrixLayoutCreate(&x_layout_, CUDA_R_16BF, kIn, kRows, kIn);
    cublasLtMatrixLayoutCreate(&y_layout_, CUDA_R_16BF, kOut, kRows, kOut);

    w_.resize(kOut * kIn);
    x_.resize(kRows * kIn);
    uint32_t state = 12345;
    const auto next = [&] {
      state = state * 1664525u + 1013904223u;
      return float(int32_t(state >> 8) % 2001 - 1000) / 1000.0f;
    };
    std::vector<__nv_bfloat16> w_bits(w_.size()), x_bits(x_.size());
    for (size_t i = 0; i < w_.size(); ++i) w_bits[i] = __float2bfloat16(w_[i] = Bf16Round(next()));
    for (size_t i = 0; i < x_.size(); ++i) x_bits[i] = __float2bfloat16(x_[i] = Bf16Round(next()));
    ASSERT_EQ(cudaMalloc(&w_dev_, w_.size() * 2), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&x_dev_, x_.size() * 2), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&y_dev_, kRows * kOut * 2), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&workspace_, kWorkspace), cudaSuccess);
    cudaMemcpy(w_dev_, w_bits.data(), w_bits.size() * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(x_dev_, x_bits.data(), x_bits.size() * 2, cudaMemcpyHostToDevice);
  }
  void TearDown() override {
    for (void* p : {w_dev_, x_dev_, y_dev_, workspace_}) cudaFree(p);
    for (auto l : {w_layout_, x_layout_, y_layout_}) {
      if (l != nullptr) cublasLtMatrixLayoutDestroy(l);
    }
    if (desc_ != nullptr) cublasLtMatmulDescDestroy(desc_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    if (lt_ != nullptr) cublasLtDestroy(lt_);
  }

  std::vector<cublasLtMatmulAlgo_t> Candidates(int most) {
    cublasLtMatmulPreference_t preference = nullptr;
    cublasLtMatmulPreferenceCreate(&preference);
    cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &kWorkspace,
                                         sizeof(kWorkspace));
    std::vector<cublasLtMatmulHeuristicResult_t> results(most);
    int found = 0;
    cublasLtMatmulAlgoGetHeuristic(lt_, desc_, w_layout_, x_layout_, y_layout_, y_layout_, preference, most,
                                   results.data(), &found);
    cublasLtMatmulPreferenceDestroy(preference);
    std::vector<cublasLtMatmulAlgo_t> out;
    for (int i = 0; i < found; ++i) {
      if (results[i].state == CUBLAS_STATUS_SUCCESS) out.push_back(results[i].algo);
    }
    return out;
  }

  LtMatmulProblem Problem() const {
    LtMatmulProblem p;
    p.lt = lt_;
    p.desc = desc_;
    p.a_layout = w_layout_;
    p.b_layout = x_layout_;
    p.d_layout = y_layout_;
    p.a = w_dev_;
    p.b = x_dev_;
    p.d = y_dev_;
    p.workspace = workspace_;
    p.workspace_bytes = kWorkspace;
    p.stream = stream_;
    return p;
  }

  static constexpr size_t kWorkspace = size_t(8) << 20;
  cublasLtHandle_t lt_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cublasLtMatmulDesc_t desc_ = nullptr;
  cublasLtMatrixLayout_t w_layout_ = nullptr, x_layout_ = nullptr, y_layout_ = nullptr;
  std::vector<float> w_, x_;
  void *w_dev_ = nullptr, *x_dev_ = nullptr, *y_dev_ = nullptr, *workspace_ = nullptr;
};

TEST_F(CublasLtAutotuneTest, KeepsTheFastestCandidateAndItComputesTheProduct) {
  const std::vector<cublasLtMatmulAlgo_t> candidates = Candidates(8);
  ASSERT_FALSE(candidates.empty());
  std::vector<AlgorithmTiming> timings;
  const absl::StatusOr<int> fastest = FastestAlgorithm(Problem(), candidates, 1, 3, &timings);
  ASSERT_TRUE(fastest.ok()) << fastest.status();
  ASSERT_EQ(timings.size(), candidates.size());
  ASSERT_GE(*fastest, 0);
  ASSERT_LT(*fastest, int(candidates.size()));
  const float kept = timings[*fastest].mean_ms;
  EXPECT_TRUE(std::isfinite(kept));
  EXPECT_GT(kept, 0.0f);
  for (size_t i = 0; i < timings.size(); ++i) {
    EXPECT_EQ(timings[i].index, int(i));
    EXPECT_LE(kept, timings[i].mean_ms) << "candidate " << i;
  }

  // The kept algorithm's product against the CPU, in fp32 from the same bf16 inputs.
  cudaMemset(y_dev_, 0, kRows * kOut * 2);
  const float alpha = 1.0f, beta = 0.0f;
  ASSERT_EQ(cublasLtMatmul(lt_, desc_, &alpha, w_dev_, w_layout_, x_dev_, x_layout_, &beta, y_dev_, y_layout_, y_dev_,
                           y_layout_, &candidates[*fastest], workspace_, kWorkspace, stream_),
            CUBLAS_STATUS_SUCCESS);
  std::vector<__nv_bfloat16> y(kRows * kOut);
  ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  cudaMemcpy(y.data(), y_dev_, y.size() * 2, cudaMemcpyDeviceToHost);
  for (int64_t r = 0; r < kRows; r += 7) {
    for (int64_t o = 0; o < kOut; ++o) {
      double want = 0;
      for (int64_t k = 0; k < kIn; ++k) want += double(x_[r * kIn + k]) * w_[o * kIn + k];
      EXPECT_NEAR(__bfloat162float(y[r * kOut + o]), want, 0.01 * std::abs(want) + 0.02) << r << ", " << o;
    }
  }
}

TEST_F(CublasLtAutotuneTest, RejectsNoRunsAndReportsWhenNoCandidateRuns) {
  const std::vector<cublasLtMatmulAlgo_t> candidates = Candidates(2);
  ASSERT_FALSE(candidates.empty());
  EXPECT_EQ(FastestAlgorithm(Problem(), candidates, 1, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FastestAlgorithm(Problem(), {}, 1, 3).status().code(), absl::StatusCode::kNotFound);
  // A workspace of zero bytes: algorithms that need one refuse to run,
  // the rest still time; the answer is one that ran or NOT_FOUND.
  LtMatmulProblem no_workspace = Problem();
  no_workspace.workspace = nullptr;
  no_workspace.workspace_bytes = 0;
  std::vector<AlgorithmTiming> timings;
  const absl::StatusOr<int> fastest = FastestAlgorithm(no_workspace, candidates, 0, 1, &timings);
  if (fastest.ok()) {
    EXPECT_TRUE(std::isfinite(timings[*fastest].mean_ms));
  } else {
    EXPECT_EQ(fastest.status().code(), absl::StatusCode::kNotFound);
  }
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

}  // namespace
}  // namespace tern::runtime
