// The quantized KV cache's CPU references (kernels/attention/kv_quant.h): the
// int8 and fp8 head-row arithmetic, the quantizing append (padding rows,
// token scales at their slots), and attention over a quantized cache, which
// must equal the fp32 reference over the dequantized values and stay close
// to it over the original ones.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "gtest/gtest.h"
#include "kernels/attention/kv_quant.h"
#include "kernels/attention/paged_attention.h"
#include "kernels/common/float8.h"

namespace tern::kernels {
namespace {

TEST(KvQuantReferenceTest, Int8HeadRowUsesItsAbsmax) {
  const std::vector<float> x = {0.5f, -2.0f, 1.0f, 0.0f, 0.01f, -0.75f};
  std::vector<int8_t> q(x.size());
  const float scale = QuantizeKvHeadInt8(x.data(), int32_t(x.size()), q.data());
  EXPECT_FLOAT_EQ(scale, 2.0f / 127.0f);
  EXPECT_EQ(q[1], -127);
  EXPECT_EQ(q[3], 0);
  std::vector<float> back(x.size());
  DequantizeKvHead(KvElement::kInt8, reinterpret_cast<const uint8_t*>(q.data()), int32_t(x.size()), scale,
                   back.data());
  for (size_t d = 0; d < x.size(); ++d) EXPECT_LE(std::fabs(back[d] - x[d]), scale / 2 * 1.0001f) << d;
}

TEST(KvQuantReferenceTest, Int8ZeroRowHasScaleZero) {
  const std::vector<float> x(8, 0.0f);
  std::vector<int8_t> q(8, 5);
  EXPECT_EQ(QuantizeKvHeadInt8(x.data(), 8, q.data()), 0.0f);
  for (int8_t c : q) EXPECT_EQ(c, 0);
}

TEST(KvQuantReferenceTest, Fp8HeadRowDividesByTheHeadScaleAndSaturates) {
  const float head_scale = 0.01f;
  const std::vector<float> x = {0.01f, -1.0f, 100.0f, 0.0f};
  std::vector<uint8_t> q(x.size());
  EXPECT_EQ(QuantizeKvHeadFp8(x.data(), int32_t(x.size()), head_scale, q.data()), head_scale);
  EXPECT_EQ(q[0], FloatToFp8E4M3(0.01f * (1.0f / head_scale)));
  EXPECT_EQ(Fp8E4M3ToFloat(q[2]), kFp8E4M3Max);  // 10000 saturates at 448
  std::vector<float> back(x.size());
  DequantizeKvHead(KvElement::kFp8E4M3, q.data(), int32_t(x.size()), head_scale, back.data());
  EXPECT_NEAR(back[0], 0.01f, 0.01f / 16);
  EXPECT_NEAR(back[1], -1.0f, 1.0f / 16);
  EXPECT_FLOAT_EQ(back[2], kFp8E4M3Max * head_scale);
  EXPECT_EQ(back[3], 0.0f);
}

TEST(KvQuantReferenceTest, AppendWritesTokenScalesAtSlotsAndSkipsPadding) {
  const int32_t heads = 2, dim = 4;
  std::vector<float> k = {1, 2, 3, 4, -8, 0, 0, 0,  // token 0
                          9, 9, 9, 9, 9, 9, 9, 9};  // token 1: a padding row
  std::vector<float> v = k;
  const std::vector<int32_t> slots = {3, -1};
  std::vector<uint8_t> kc(5 * heads * dim, 0xEE), vc(5 * heads * dim, 0xEE);
  std::vector<float> ks(5 * heads, -1.0f), vs(5 * heads, -1.0f);
  KvWriteQuantParams p;
  p.element = KvElement::kInt8;
  p.num_tokens = 2;
  p.num_kv_heads = heads;
  p.head_dim = dim;
  p.k_row_stride = heads * dim;
  p.v_row_stride = heads * dim;
  WriteKvQuantizedReference(p, k.data(), v.data(), slots.data(), kc.data(), vc.data(), ks.data(), vs.data());
  EXPECT_FLOAT_EQ(ks[3 * heads + 0], 4.0f / 127.0f);
  EXPECT_FLOAT_EQ(ks[3 * heads + 1], 8.0f / 127.0f);
  EXPECT_EQ(int8_t(kc[3 * heads * dim + dim]), -127);
  for (int32_t i = 0; i < 5 * heads; ++i) {
    if (i / heads != 3) {
      EXPECT_EQ(ks[i], -1.0f) << i;  // only slot 3 written
    }
  }
  EXPECT_EQ(kc[0], 0xEE);
}

// Attention over a quantized cache of random rows, for both element types.
class QuantizedAttentionReferenceTest : public ::testing::TestWithParam<KvElement> {};

TEST_P(QuantizedAttentionReferenceTest, EqualsFp32OverDequantizedValuesAndIsCloseToTheOriginal) {
  const KvElement element = GetParam();
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int32_t heads = 4, kv_heads = 2, dim = 16, block = 4, blocks = 6;
  const int64_t slots = blocks * block, width = kv_heads * dim;
  std::vector<float> k(slots * width), v(slots * width), q(3 * heads * dim);
  for (auto& x : k) x = normal(rng);
  for (auto& x : v) x = normal(rng);
  for (auto& x : q) x = normal(rng);
  std::vector<uint8_t> kc(slots * width), vc(slots * width);
  const bool int8 = element == KvElement::kInt8;
  std::vector<float> ks = int8 ? std::vector<float>(slots * kv_heads) : std::vector<float>{0.01f, 0.02f};
  std::vector<float> vs = int8 ? std::vector<float>(slots * kv_heads) : std::vector<float>{0.015f, 0.01f};
  std::vector<int32_t> all(slots);
  std::iota(all.begin(), all.end(), 0);
  KvWriteQuantParams wp{element, slots, kv_heads, dim, width, width};
  WriteKvQuantizedReference(wp, k.data(), v.data(), all.data(), kc.data(), vc.data(), ks.data(), vs.data());
  // The dequantized cache, as the fp32 reference sees it.
  std::vector<float> kd(k.size()), vd(v.size());
  for (int64_t s = 0; s < slots; ++s) {
    for (int32_t h = 0; h < kv_heads; ++h) {
      const int64_t at = s * width + h * dim;
      DequantizeKvHead(element, kc.data() + at, dim, int8 ? ks[s * kv_heads + h] : ks[h], kd.data() + at);
      DequantizeKvHead(element, vc.data() + at, dim, int8 ? vs[s * kv_heads + h] : vs[h], vd.data() + at);
    }
  }
  // Two sequences: a 2-token prefill chunk over 9 tokens, and a decode row over 13.
  const std::vector<int32_t> query_start = {0, 2, 3}, context = {9, 13}, indptr = {0, 3, 7},
                             ids = {5, 0, 2, 1, 3, 4, 0};
  PagedAttentionParams p;
  p.num_seqs = 2;
  p.num_heads = heads;
  p.num_kv_heads = kv_heads;
  p.head_dim = dim;
  p.block_size = block;
  p.scale = 0.25f;
  p.query_start = query_start.data();
  p.context_lens = context.data();
  p.block_indptr = indptr.data();
  p.block_ids = ids.data();
  p.q_row_stride = heads * dim;
  p.out_row_stride = heads * dim;
  std::vector<float> original(q.size()), dequantized(q.size()), quantized(q.size());
  PagedAttentionReference(p, q.data(), k.data(), v.data(), original.data(), 0, 2);
  PagedAttentionReference(p, q.data(), kd.data(), vd.data(), dequantized.data(), 0, 2);
  p.kv_element = element;
  p.k_scales = ks.data();
  p.v_scales = vs.data();
  PagedAttentionQuantizedReference(p, q.data(), kc.data(), vc.data(), quantized.data(), 0, 2);
  for (size_t i = 0; i < q.size(); ++i) {
    EXPECT_EQ(quantized[i], dequantized[i]) << i;
    // fp8 at these scales keeps 3 mantissa bits; int8 about 7.
    EXPECT_NEAR(quantized[i], original[i], int8 ? 0.05f : 0.25f) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Elements, QuantizedAttentionReferenceTest,
                         ::testing::Values(KvElement::kFp8E4M3, KvElement::kInt8));

}  // namespace
}  // namespace tern::kernels
