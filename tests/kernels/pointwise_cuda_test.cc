// GPU RMSNorm, RoPE (alone and fused with the KV append), SwiGLU and the data-movement kernels against their CPU
// references, in fp32, fp16 and bf16, on fresh random inputs and edge shapes.
#include <cmath>
#include <random>

#include "gtest/gtest.h"
#include "kernels/activation/silu_mul.h"
#include "kernels/elementwise/elementwise.h"
#include "kernels/norm/rmsnorm.h"
#include "kernels/attention/paged_attention.h"
#include "kernels/rope/rope.h"
#include "kernels/rope/rope_kv_append.h"
#include "tests/kernels/cuda_test_util.h"

namespace tern::kernels {
namespace {

using testing::DeviceArray;
using testing::DeviceVector;

std::vector<float> Random(size_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> out(n);
  for (auto& x : out) x = normal(rng);
  return out;
}

class PointwiseCudaTest : public ::testing::TestWithParam<ScalarType> {
 protected:
  void SetUp() override {
    if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  }
  ScalarType type() const { return GetParam(); }
};

TEST_P(PointwiseCudaTest, RmsNormMatchesReference) {
  for (auto [tokens, hidden] : {std::pair{1, 1}, std::pair{7, 257}, std::pair{33, 4096}, std::pair{3, 8192}}) {
    auto x = Random(size_t(tokens) * hidden, tokens + hidden, 2.0f);
    auto w = Random(hidden, hidden);
    DeviceArray dx(type(), x.size()), dw(type(), w.size()), dy(type(), x.size());
    dx.Upload(x);
    dw.Upload(w);
    const RmsNormParams p{tokens, hidden, hidden, hidden, 1e-5f};
    ASSERT_EQ(LaunchRmsNorm(type(), p, dx.data(), dw.data(), dy.data(), nullptr), cudaSuccess);
    std::vector<float> want(x.size());
    RmsNormReference(p, x.data(), w.data(), want.data());
    EXPECT_LT(testing::RelativeError(dy.Download(), want), testing::Tolerance(type())) << tokens << "x" << hidden;
  }
  const RmsNormParams empty{0, 64, 64, 64, 1e-5f};
  EXPECT_EQ(LaunchRmsNorm(type(), empty, nullptr, nullptr, nullptr, nullptr), cudaSuccess);
  const RmsNormParams bad{4, 0, 0, 0, 1e-5f};
  EXPECT_EQ(LaunchRmsNorm(type(), bad, nullptr, nullptr, nullptr, nullptr), cudaErrorInvalidValue);
}

TEST_P(PointwiseCudaTest, AddRmsNormMatchesReferenceAndTheUnfusedPair) {
  for (auto [tokens, hidden] : {std::pair{1, 1}, std::pair{5, 384}, std::pair{33, 4096}, std::pair{2, 8192}}) {
    const int64_t x_stride = hidden + 8;  // strided rows
    auto x = Random(size_t(tokens) * x_stride, tokens * 7 + hidden, 2.0f);
    auto r = Random(size_t(tokens) * hidden, hidden + 3);
    auto w = Random(hidden, hidden);
    DeviceArray dx(type(), x.size()), dr(type(), r.size()), dw(type(), w.size()), dy(type(), size_t(tokens) * hidden);
    DeviceArray ux(type(), x.size()), uy(type(), size_t(tokens) * hidden);
    dx.Upload(x);
    ux.Upload(x);
    dr.Upload(r);
    dw.Upload(w);
    AddRmsNormParams p;
    p.norm = {tokens, hidden, x_stride, hidden, 1e-5f};
    p.residual_row_stride = hidden;
    ASSERT_EQ(LaunchAddRmsNorm(type(), p, dx.data(), dr.data(), dw.data(), dy.data(), nullptr), cudaSuccess);
    // The unfused pair on the device: identical bits expected.
    ASSERT_EQ(LaunchAdd(type(), tokens, hidden, ux.data(), x_stride, dr.data(), hidden, nullptr), cudaSuccess);
    ASSERT_EQ(LaunchRmsNorm(type(), p.norm, ux.data(), dw.data(), uy.data(), nullptr), cudaSuccess);
    EXPECT_EQ(dy.Download(), uy.Download()) << tokens << "x" << hidden;
    EXPECT_EQ(dx.Download(), ux.Download()) << tokens << "x" << hidden;

    std::vector<float> want_x = x, want_y(size_t(tokens) * hidden);
    AddRmsNormReference(p, want_x.data(), r.data(), w.data(), want_y.data());
    EXPECT_LT(testing::RelativeError(dy.Download(), want_y), testing::Tolerance(type())) << tokens << "x" << hidden;
  }
  AddRmsNormParams empty;
  empty.norm = {0, 64, 64, 64, 1e-5f};
  EXPECT_EQ(LaunchAddRmsNorm(type(), empty, nullptr, nullptr, nullptr, nullptr, nullptr), cudaSuccess);
  AddRmsNormParams bad;
  bad.norm = {4, 0, 0, 0, 1e-5f};
  EXPECT_EQ(LaunchAddRmsNorm(type(), bad, nullptr, nullptr, nullptr, nullptr, nullptr), cudaErrorInvalidValue);
}

TEST_P(PointwiseCudaTest, RopeMatchesReference) {
  for (int64_t head_dim : {64, 128}) {
    const int64_t tokens = 9, heads = 4, stride = heads * head_dim + 32;  // a strided view
    auto x = Random(size_t(tokens) * stride, head_dim);
    std::vector<int32_t> positions = {0, 1, 2, 17, 100, 511, 2047, 4095, 8191};
    std::vector<float> inv_freq(head_dim / 2);
    for (int64_t i = 0; i < head_dim / 2; ++i) inv_freq[i] = 1.0f / std::pow(500000.0f, float(2 * i) / head_dim);
    DeviceArray dx(type(), x.size());
    dx.Upload(x);
    DeviceVector<int32_t> dpos(positions);
    DeviceVector<float> dfreq(inv_freq);
    const RopeParams p{tokens, heads, head_dim, stride};
    ASSERT_EQ(LaunchRope(type(), p, dpos.data(), dfreq.data(), dx.data(), nullptr), cudaSuccess);
    std::vector<float> want = x;
    RopeReference(p, positions.data(), inv_freq.data(), want.data());
    // Large angles lose a little in fp32 argument reduction; compare loosely in fp32.
    EXPECT_LT(testing::RelativeError(dx.Download(), want), std::max(testing::Tolerance(type()), 2e-4f));
  }
}

// The fused decode seam: q rotated in place, rotated k and v at their slots,
// a padding row (slot -1) stored nowhere; equal bit for bit to LaunchRope on q
// and k followed by LaunchWriteKv, and close to the fp32 reference. GQA
// groups 1, 4 and 8, head dims 64 and 128, strided qkv rows.
TEST_P(PointwiseCudaTest, RopeKvAppendEqualsRopeThenWriteKv) {
  constexpr int64_t kSlots = 40;
  for (int32_t head_dim : {64, 128}) {
    for (int32_t group : {1, 4, 8}) {
      const int32_t kv_heads = 2, heads = kv_heads * group;
      const int64_t tokens = 6, q_width = int64_t(heads) * head_dim, width = int64_t(kv_heads) * head_dim;
      const int64_t stride = q_width + 2 * width + 16;  // one qkv row, with slack
      auto qkv = Random(size_t(tokens) * stride, head_dim * 31 + group);
      const std::vector<int32_t> positions = {0, 5, 63, 64, 1000, 4097};
      const std::vector<int32_t> slots = {3, 39, -1, 0, 17, 16};
      std::vector<float> inv_freq(head_dim / 2);
      for (int i = 0; i < head_dim / 2; ++i) inv_freq[i] = 1.0f / std::pow(10000.0f, float(2 * i) / head_dim);
      std::vector<float> zeros(kSlots * width, 0.0f);
      DeviceVector<int32_t> dpos(positions), dslots(slots);
      DeviceVector<float> dfreq(inv_freq);

      DeviceArray fused(type(), qkv.size()), fk(type(), zeros.size()), fv(type(), zeros.size());
      fused.Upload(qkv);
      fk.Upload(zeros);
      fv.Upload(zeros);
      const size_t elem = type() == ScalarType::kF32 ? 4 : 2;
      auto* base = static_cast<uint8_t*>(fused.data());
      RopeKvAppendParams p;
      p.num_tokens = tokens;
      p.num_heads = heads;
      p.num_kv_heads = kv_heads;
      p.head_dim = head_dim;
      p.q_row_stride = p.k_row_stride = p.v_row_stride = stride;
      ASSERT_EQ(LaunchRopeKvAppend(type(), p, dpos.data(), dfreq.data(), dslots.data(), base,
                                   base + q_width * elem, base + (q_width + width) * elem, fk.data(), fv.data(),
                                   nullptr),
                cudaSuccess);

      DeviceArray split(type(), qkv.size()), sk(type(), zeros.size()), sv(type(), zeros.size());
      split.Upload(qkv);
      sk.Upload(zeros);
      sv.Upload(zeros);
      auto* sbase = static_cast<uint8_t*>(split.data());
      ASSERT_EQ(LaunchRope(type(), {tokens, heads, head_dim, stride}, dpos.data(), dfreq.data(), sbase, nullptr),
                cudaSuccess);
      ASSERT_EQ(LaunchRope(type(), {tokens, kv_heads, head_dim, stride}, dpos.data(), dfreq.data(),
                           sbase + q_width * elem, nullptr),
                cudaSuccess);
      ASSERT_EQ(LaunchWriteKv(type(), tokens, kv_heads, head_dim, sbase + q_width * elem, stride,
                              sbase + (q_width + width) * elem, stride, dslots.data(), sk.data(), sv.data(), nullptr),
                cudaSuccess);
      const std::vector<float> got_qkv = fused.Download(), got_k = fk.Download(), got_v = fv.Download();
      const std::vector<float> split_qkv = split.Download();
      for (int64_t t = 0; t < tokens; ++t) {  // q columns only: the fused path leaves k unrotated
        for (int64_t c = 0; c < q_width; ++c) {
          ASSERT_EQ(got_qkv[t * stride + c], split_qkv[t * stride + c]) << "q " << t << "," << c;
        }
      }
      EXPECT_EQ(got_k, sk.Download()) << head_dim << " group " << group;
      EXPECT_EQ(got_v, sv.Download()) << head_dim << " group " << group;

      std::vector<float> want_qkv = qkv, want_k = zeros, want_v = zeros;
      RopeKvAppendReference(p, positions.data(), inv_freq.data(), slots.data(), want_qkv.data(),
                            qkv.data() + q_width, qkv.data() + q_width + width, want_k.data(), want_v.data());
      const float tolerance = std::max(testing::Tolerance(type()), 2e-4f);
      EXPECT_LT(testing::RelativeError(got_k, want_k), tolerance);
      EXPECT_LT(testing::RelativeError(got_v, want_v), tolerance);
      EXPECT_LT(testing::RelativeError(got_qkv, want_qkv), tolerance);  // k, v columns untouched in both
    }
  }
}

TEST_P(PointwiseCudaTest, SiluMulMatchesReference) {
  const int64_t tokens = 5, width = 1000;
  auto gate_up = Random(size_t(tokens) * 2 * width, 3, 3.0f);
  DeviceArray dgu(type(), gate_up.size()), dout(type(), size_t(tokens) * width);
  dgu.Upload(gate_up);
  const size_t bytes = testing::ElementBytes(type());
  ASSERT_EQ(LaunchSiluMul(type(), tokens, width, dgu.data(), 2 * width,
                          static_cast<uint8_t*>(dgu.data()) + width * bytes, 2 * width, dout.data(), width, nullptr),
            cudaSuccess);
  std::vector<float> want(size_t(tokens) * width);
  SiluMulReference(tokens, width, gate_up.data(), 2 * width, gate_up.data() + width, 2 * width, want.data(), width);
  EXPECT_LT(testing::RelativeError(dout.Download(), want), testing::Tolerance(type()));
}

TEST_P(PointwiseCudaTest, EmbeddingGatherAddAndScatter) {
  const int64_t vocab = 50, width = 96;
  auto table = Random(size_t(vocab) * width, 1);
  DeviceArray dtable(type(), table.size());
  dtable.Upload(table);
  const std::vector<int32_t> ids = {3, 49, 0, 3};
  DeviceVector<int32_t> dids(ids);
  DeviceArray demb(type(), ids.size() * width);
  ASSERT_EQ(LaunchEmbedding(type(), int64_t(ids.size()), width, dids.data(), dtable.data(), demb.data(), width, nullptr),
            cudaSuccess);
  const std::vector<float> emb = demb.Download();
  for (size_t t = 0; t < ids.size(); ++t) {
    for (int64_t c = 0; c < width; ++c) ASSERT_EQ(emb[t * width + c], table[ids[t] * width + c]);
  }
  // x += y, then gather rows 3 and 1.
  auto y = Random(ids.size() * width, 2);
  DeviceArray dy(type(), y.size());
  dy.Upload(y);
  ASSERT_EQ(LaunchAdd(type(), int64_t(ids.size()), width, demb.data(), width, dy.data(), width, nullptr), cudaSuccess);
  std::vector<float> sum = demb.Download();
  for (size_t i = 0; i < sum.size(); ++i) {
    EXPECT_NEAR(sum[i], emb[i] + y[i], testing::Tolerance(type()) * (1 + std::abs(emb[i] + y[i])));
  }
  const std::vector<int32_t> rows = {3, 1};
  DeviceVector<int32_t> drows(rows);
  DeviceArray dgathered(type(), rows.size() * width);
  ASSERT_EQ(LaunchGatherRows(type(), 2, width, drows.data(), demb.data(), width, dgathered.data(), width, nullptr),
            cudaSuccess);
  const std::vector<float> gathered = dgathered.Download();
  for (int64_t c = 0; c < width; ++c) EXPECT_EQ(gathered[c], sum[3 * width + c]);
}

INSTANTIATE_TEST_SUITE_P(Types, PointwiseCudaTest,
                         ::testing::Values(ScalarType::kF32, ScalarType::kF16, ScalarType::kBF16),
                         [](const auto& info) { return std::string(testing::Name(info.param)); });

}  // namespace
}  // namespace tern::kernels
