// MoE routing (softmax top-k, renormalized weights, stable sort by expert)
// and the combine kernel against their CPU references, for Mixtral-like and
// wide expert counts, top-k 1/2/8, token counts across the sort's chunk size.
#include <random>

#include "gtest/gtest.h"
#include "kernels/moe/moe_routing.h"
#include "tests/kernels/cuda_test_util.h"

namespace tern::kernels {
namespace {

using testing::DeviceArray;
using testing::DeviceVector;

class MoeRoutingCudaTest : public ::testing::TestWithParam<ScalarType> {
 protected:
  void SetUp() override {
    if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(MoeRoutingCudaTest, RouteAndCombineMatchReference) {
  const ScalarType type = GetParam();
  struct Case {
    int64_t tokens;
    int32_t experts, top_k;
  };
  for (const Case c : {Case{1, 8, 2}, Case{7, 4, 1}, Case{300, 8, 2}, Case{700, 64, 2}, Case{1100, 8, 2},
                       Case{129, 256, 8}, Case{5, 8, 8}}) {
    std::mt19937 rng(uint32_t(c.tokens * 131 + c.experts * 7 + c.top_k));
    std::normal_distribution<float> normal(0.0f, 2.0f);
    const int64_t stride = c.experts + 3;
    std::vector<float> logits(size_t(c.tokens * stride));
    for (auto& v : logits) v = normal(rng);
    DeviceArray d_logits(type, logits.size());
    d_logits.Upload(logits);  // rounds the host copy to the type too
    const MoeRoutingParams p{c.tokens, c.experts, c.top_k, stride};
    const MoeRouting want = MoeRouteReference(p, logits.data());

    const size_t n = size_t(c.tokens * c.top_k);
    const std::vector<int32_t> int_zeros(n, 0), offset_zeros(size_t(c.experts) + 1, 0);
    const std::vector<float> float_zeros(n, 0.0f);
    DeviceVector<int32_t> ids{int_zeros}, offsets{offset_zeros}, sorted_tokens{int_zeros}, entry_rows{int_zeros};
    DeviceVector<float> weights{float_zeros}, sorted_weights{float_zeros};
    ASSERT_EQ(LaunchMoeRoute(type, p, d_logits.data(), ids.mutable_data(), weights.mutable_data(),
                             offsets.mutable_data(), sorted_tokens.mutable_data(), sorted_weights.mutable_data(),
                             entry_rows.mutable_data(), nullptr),
              cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const std::string where = std::to_string(c.tokens) + " tokens, " + std::to_string(c.experts) + " experts, top " +
                              std::to_string(c.top_k);
    EXPECT_EQ(ids.Download(), want.topk_ids) << where;
    EXPECT_EQ(offsets.Download(), want.expert_offsets) << where;
    EXPECT_EQ(sorted_tokens.Download(), want.sorted_tokens) << where;
    EXPECT_EQ(entry_rows.Download(), want.entry_rows) << where;
    const auto got_weights = sorted_weights.Download();
    for (size_t i = 0; i < n; ++i) ASSERT_NEAR(got_weights[i], want.sorted_weights[i], 1e-5f) << where << " row " << i;

    // Combine the expert outputs of the sorted rows back per token.
    const int64_t hidden = 96, y_stride = 100, out_stride = 97;
    std::vector<float> y(n * y_stride);
    for (auto& v : y) v = normal(rng);
    DeviceArray d_y(type, y.size()), d_out(type, size_t(c.tokens * out_stride));
    d_y.Upload(y);
    std::vector<float> zeros(size_t(c.tokens * out_stride), 0.0f);
    d_out.Upload(zeros);
    ASSERT_EQ(LaunchMoeCombine(type, c.tokens, c.top_k, hidden, entry_rows.data(), sorted_weights.data(), d_y.data(),
                               y_stride, d_out.data(), out_stride, nullptr),
              cudaSuccess);
    std::vector<float> want_out(zeros.size(), 0.0f);
    MoeCombineReference(c.tokens, c.top_k, hidden, want.entry_rows.data(), want.sorted_weights.data(), y.data(),
                        y_stride, want_out.data(), out_stride);
    EXPECT_LT(testing::RelativeError(d_out.Download(), want_out), testing::Tolerance(type)) << where;
  }
}

TEST_P(MoeRoutingCudaTest, RejectsBadParametersAndHandlesNoTokens) {
  const ScalarType type = GetParam();
  const std::vector<int32_t> sevens(9, 7);
  DeviceVector<int32_t> offsets{sevens};
  MoeRoutingParams none{0, 8, 2, 8};
  ASSERT_EQ(LaunchMoeRoute(type, none, nullptr, nullptr, nullptr, offsets.mutable_data(), nullptr, nullptr, nullptr,
                           nullptr),
            cudaSuccess);
  EXPECT_EQ(offsets.Download(), std::vector<int32_t>(9, 0));
  for (const MoeRoutingParams bad : {MoeRoutingParams{4, 0, 1, 8}, MoeRoutingParams{4, 8, 0, 8},
                                     MoeRoutingParams{4, 8, 9, 8}, MoeRoutingParams{4, 2, 3, 8},
                                     MoeRoutingParams{4, kMoeMaxExperts + 1, 2, 300}}) {
    EXPECT_EQ(LaunchMoeRoute(type, bad, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr),
              cudaErrorInvalidValue);
  }
  EXPECT_EQ(LaunchMoeCombine(type, 0, 2, 64, nullptr, nullptr, nullptr, 64, nullptr, 64, nullptr), cudaSuccess);
}

INSTANTIATE_TEST_SUITE_P(Types, MoeRoutingCudaTest,
                         ::testing::Values(ScalarType::kF32, ScalarType::kF16, ScalarType::kBF16),
                         [](const auto& info) {
                           return info.param == ScalarType::kF32 ? "f32" : info.param == ScalarType::kF16 ? "f16"
                                                                                                         : "bf16";
                         });

}  // namespace
}  // namespace tern::kernels
