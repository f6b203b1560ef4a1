// The tensor-core prefill attention against the CPU reference on fresh random
// inputs: one-token queries, pages exactly full, chunked prefill over prior
// context, many sequences of unequal length, query-tile edges, a 2048-token
// prompt, GQA ratios 1/4/8, head dims 64/80/96/128, sliding windows, and the
// shapes it must refuse.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "gtest/gtest.h"
#include "kernels/attention/flash_prefill_attention.h"
#include "kernels/attention/paged_attention.h"
#include "tests/kernels/cuda_test_util.h"

namespace tern::kernels {
namespace {

using testing::DeviceArray;
using testing::DeviceVector;

struct Shape {
  int32_t num_heads, num_kv_heads, head_dim, block_size;
  std::vector<std::pair<int32_t, int32_t>> seqs;  // (query rows, context after the step)
  int32_t sliding_window = 0;
  int32_t q_pad = 0;  // extra elements per query row, as when q is a slice of a fused QKV row
};

void RunCase(ScalarType type, const Shape& shape, uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << testing::Name(type) << " heads " << shape.num_heads << "/"
                                    << shape.num_kv_heads << " d " << shape.head_dim << " block "
                                    << shape.block_size << " window " << shape.sliding_window << " seed " << seed);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int32_t num_seqs = int32_t(shape.seqs.size());
  const testing::ScatteredBatch batch = testing::MakeScatteredBatch(shape.seqs, shape.block_size, rng);
  const auto& [query_start, context_lens, block_indptr, block_ids, row_seq, num_blocks] = batch;
  const int32_t rows = query_start.back();
  const int64_t width = int64_t(shape.num_heads) * shape.head_dim;
  const int64_t q_stride = width + shape.q_pad;
  const int64_t cache_elems = int64_t(num_blocks) * shape.block_size * shape.num_kv_heads * shape.head_dim;
  std::vector<float> q(size_t(rows) * q_stride), k(cache_elems), v(cache_elems);
  for (auto& x : q) x = normal(rng);
  for (auto& x : k) x = normal(rng);
  for (auto& x : v) x = normal(rng);

  DeviceArray dq(type, q.size()), dk(type, k.size()), dv(type, v.size()), dout(type, size_t(rows) * width);
  dq.Upload(q);
  dk.Upload(k);
  dv.Upload(v);
  // All-ones bits are NaN in fp16 and bf16: any row the kernel skips fails the check below.
  ASSERT_EQ(cudaMemset(dout.data(), 0xFF, size_t(rows) * width * testing::ElementBytes(type)), cudaSuccess);
  DeviceVector<int32_t> d_query_start(query_start), d_context(context_lens), d_indptr(block_indptr),
      d_blocks(block_ids);

  PagedAttentionParams p;
  p.num_seqs = num_seqs;
  p.num_heads = shape.num_heads;
  p.num_kv_heads = shape.num_kv_heads;
  p.head_dim = shape.head_dim;
  p.block_size = shape.block_size;
  p.scale = 1.0f / std::sqrt(float(shape.head_dim));
  p.sliding_window = shape.sliding_window;
  p.q_row_stride = q_stride;
  p.out_row_stride = width;
  PagedAttentionParams host = p;
  host.query_start = query_start.data();
  host.context_lens = context_lens.data();
  host.block_indptr = block_indptr.data();
  host.block_ids = block_ids.data();
  std::vector<float> want(size_t(rows) * width);
  PagedAttentionReference(host, q.data(), k.data(), v.data(), want.data(), 0, num_seqs);

  p.query_start = d_query_start.data();
  p.context_lens = d_context.data();
  p.block_indptr = d_indptr.data();
  p.block_ids = d_blocks.data();
  ASSERT_EQ(SupportsFlashPrefillAttention(type, p), cudaSuccess);
  ASSERT_EQ(LaunchFlashPrefillAttention(type, p, rows, dq.data(), dk.data(), dv.data(), dout.data(), nullptr),
            cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  if (rows == 0) return;
  const std::vector<float> got = dout.Download();
  size_t non_finite = 0;
  for (float x : got) non_finite += std::isfinite(x) ? 0 : 1;
  EXPECT_EQ(non_finite, 0u);
  EXPECT_LT(testing::RelativeError(got, want), testing::Tolerance(type));
}

class FlashPrefillAttentionCudaTest : public ::testing::TestWithParam<ScalarType> {
 protected:
  void SetUp() override {
    if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(FlashPrefillAttentionCudaTest, OneTokenQueries) {
  RunCase(GetParam(), {8, 2, 128, 16, {{1, 1}, {1, 17}, {1, 16}, {1, 300}}}, 1);
}

TEST_P(FlashPrefillAttentionCudaTest, PagesExactlyFull) {
  RunCase(GetParam(), {4, 4, 64, 16, {{16, 16}}}, 2);
  RunCase(GetParam(), {4, 2, 128, 16, {{64, 64}, {32, 128}}}, 3);
}

TEST_P(FlashPrefillAttentionCudaTest, ChunkedPrefillOverPriorContext) {
  RunCase(GetParam(), {8, 2, 128, 16, {{37, 100}, {64, 200}, {20, 85}, {130, 131}}}, 4);
}

TEST_P(FlashPrefillAttentionCudaTest, ManySequencesOfUnequalLength) {
  std::mt19937 rng(GetParam() == ScalarType::kF16 ? 5 : 6);
  std::uniform_int_distribution<int32_t> rows(1, 200), prior(0, 150);
  Shape shape{8, 4, 64, 16, {}};
  for (int i = 0; i < 14; ++i) {
    const int32_t n = rows(rng);
    shape.seqs.push_back({n, n + (i % 3 == 0 ? 0 : prior(rng))});
  }
  shape.seqs.push_back({0, 10});  // a sequence with no query rows this step
  shape.seqs.push_back({1, 1});
  RunCase(GetParam(), shape, 7);
}

TEST_P(FlashPrefillAttentionCudaTest, QueryTileEdges) {
  for (int32_t n : {63, 64, 65, 127, 128, 129, 255, 256, 257}) RunCase(GetParam(), {4, 1, 64, 16, {{n, n}}}, 8 + n);
  RunCase(GetParam(), {4, 1, 128, 16, {{63, 63}, {64, 70}, {65, 65}, {127, 200}, {129, 129}, {256, 300}}}, 9);
}

TEST_P(FlashPrefillAttentionCudaTest, PromptOf2048Tokens) {
  RunCase(GetParam(), {4, 1, 128, 16, {{2048, 2048}}}, 10);
}

TEST_P(FlashPrefillAttentionCudaTest, GqaRatiosAndHeadDims) {
  for (int32_t group : {1, 4, 8}) {
    for (int32_t head_dim : {64, 80, 96, 128}) {
      RunCase(GetParam(), {8, 8 / group, head_dim, 16, {{100, 100}, {1, 40}, {70, 90}}}, 11 + group + head_dim);
    }
  }
}

TEST_P(FlashPrefillAttentionCudaTest, OtherPageSizesAndStridedQueries) {
  RunCase(GetParam(), {4, 2, 64, 8, {{50, 77}, {9, 9}}, 0, 2 * 2 * 64}, 12);
  RunCase(GetParam(), {4, 4, 128, 32, {{96, 96}, {33, 100}}, 0, 8}, 13);
  RunCase(GetParam(), {2, 1, 64, 4, {{70, 75}}}, 14);
}

TEST_P(FlashPrefillAttentionCudaTest, SlidingWindow) {
  RunCase(GetParam(), {8, 2, 64, 16, {{5, 70}, {1, 40}, {100, 300}, {64, 64}}, 24}, 15);
  RunCase(GetParam(), {4, 1, 128, 16, {{300, 300}, {129, 400}}, 100}, 16);
  RunCase(GetParam(), {4, 4, 64, 16, {{200, 200}}, 64}, 17);
}

TEST_P(FlashPrefillAttentionCudaTest, EmptyBatchIsANoOp) {
  RunCase(GetParam(), {4, 1, 64, 8, {}}, 18);
}

TEST(FlashPrefillAttentionSupportTest, RefusesWhatItCannotRun) {
  PagedAttentionParams p;
  p.num_heads = 8;
  p.num_kv_heads = 2;
  p.head_dim = 128;
  p.block_size = 16;
  p.q_row_stride = 8 * 128;
  p.out_row_stride = 8 * 128;
  EXPECT_EQ(SupportsFlashPrefillAttention(ScalarType::kF16, p), cudaSuccess);
  EXPECT_EQ(SupportsFlashPrefillAttention(ScalarType::kBF16, p), cudaSuccess);
  EXPECT_EQ(SupportsFlashPrefillAttention(ScalarType::kF32, p), cudaErrorNotSupported);
  for (int32_t head_dim : {16, 72, 256}) {
    PagedAttentionParams other = p;
    other.head_dim = head_dim;
    other.q_row_stride = other.out_row_stride = 8 * head_dim;
    EXPECT_EQ(SupportsFlashPrefillAttention(ScalarType::kF16, other), cudaErrorNotSupported) << head_dim;
    EXPECT_EQ(LaunchFlashPrefillAttention(ScalarType::kF16, other, 1, nullptr, nullptr, nullptr, nullptr, nullptr),
              cudaErrorNotSupported);
  }
  PagedAttentionParams uneven = p;
  uneven.num_kv_heads = 3;
  EXPECT_EQ(SupportsFlashPrefillAttention(ScalarType::kF16, uneven), cudaErrorNotSupported);
  PagedAttentionParams odd_stride = p;
  odd_stride.q_row_stride = 8 * 128 + 4;
  EXPECT_EQ(SupportsFlashPrefillAttention(ScalarType::kF16, odd_stride), cudaErrorNotSupported);
}

TEST(FlashPrefillAttentionSupportTest, TileCountCoversEverySplit) {
  // Every sequence needs ceil(n / tile) tiles; the count grants each at least that.
  std::mt19937 rng(19);
  std::uniform_int_distribution<int32_t> len(0, 300), count(1, 20);
  for (int trial = 0; trial < 200; ++trial) {
    const int32_t seqs = count(rng);
    int64_t rows = 0, needed = 0;
    int64_t granted = 0;
    for (int32_t s = 0; s < seqs; ++s) {
      const int32_t n = len(rng);
      const int64_t first = rows / kFlashQueryTile + s;
      rows += n;
      const int64_t next = rows / kFlashQueryTile + s + 1;
      EXPECT_GE(next - first, (n + kFlashQueryTile - 1) / kFlashQueryTile);
      needed += (n + kFlashQueryTile - 1) / kFlashQueryTile;
      granted = next;
    }
    EXPECT_EQ(granted, FlashPrefillTileCount(rows, seqs));
    EXPECT_GE(granted, needed);
  }
}

INSTANTIATE_TEST_SUITE_P(Types, FlashPrefillAttentionCudaTest,
                         ::testing::Values(ScalarType::kF16, ScalarType::kBF16),
                         [](const auto& info) { return std::string(testing::Name(info.param)); });

}  // namespace
}  // namespace tern::kernels
