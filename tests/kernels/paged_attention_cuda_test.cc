// GPU paged attention and KV append against the CPU reference, over dtypes,
// GQA ratios, head dims and batch shapes (decode, chunked prefill over prior
// context, one token, a block exactly full, an empty batch).
#include <algorithm>
#include <numeric>
#include <random>

#include "gtest/gtest.h"
#include "kernels/attention/paged_attention.h"
#include "tests/kernels/cuda_test_util.h"

namespace tern::kernels {
namespace {

using testing::DeviceArray;
using testing::DeviceVector;

struct Shape {
  int32_t num_heads, num_kv_heads, head_dim, block_size;
  std::vector<std::pair<int32_t, int32_t>> seqs;  // (new tokens, context after the step)
  int32_t sliding_window = 0;
};

void RunCase(ScalarType type, const Shape& shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int32_t num_seqs = int32_t(shape.seqs.size());
  const testing::ScatteredBatch batch = testing::MakeScatteredBatch(shape.seqs, shape.block_size, rng);
  const auto& [query_start, context_lens, block_indptr, block_ids, row_seq, num_blocks] = batch;
  const int32_t rows = query_start.back();
  const int64_t q_width = int64_t(shape.num_heads) * shape.head_dim;
  const int64_t cache_elems = int64_t(num_blocks) * shape.block_size * shape.num_kv_heads * shape.head_dim;
  std::vector<float> q(size_t(rows) * q_width), k(cache_elems), v(cache_elems);
  for (auto& x : q) x = normal(rng);
  for (auto& x : k) x = normal(rng);
  for (auto& x : v) x = normal(rng);

  DeviceArray dq(type, q.size()), dk(type, k.size()), dv(type, v.size()), dout(type, q.size());
  dq.Upload(q);
  dk.Upload(k);
  dv.Upload(v);
  DeviceVector<int32_t> d_query_start(query_start), d_context(context_lens), d_indptr(block_indptr),
      d_blocks(block_ids), d_row_seq(row_seq);

  PagedAttentionParams p;
  p.num_seqs = num_seqs;
  p.num_heads = shape.num_heads;
  p.num_kv_heads = shape.num_kv_heads;
  p.head_dim = shape.head_dim;
  p.block_size = shape.block_size;
  p.scale = 1.0f / std::sqrt(float(shape.head_dim));
  p.sliding_window = shape.sliding_window;
  p.q_row_stride = q_width;
  p.out_row_stride = q_width;
  PagedAttentionParams host = p;
  host.query_start = query_start.data();
  host.context_lens = context_lens.data();
  host.block_indptr = block_indptr.data();
  host.block_ids = block_ids.data();
  std::vector<float> want(q.size());
  PagedAttentionReference(host, q.data(), k.data(), v.data(), want.data(), 0, num_seqs);

  p.query_start = d_query_start.data();
  p.context_lens = d_context.data();
  p.block_indptr = d_indptr.data();
  p.block_ids = d_blocks.data();
  ASSERT_EQ(LaunchPagedAttention(type, p, rows, d_row_seq.data(), dq.data(), dk.data(), dv.data(), dout.data(), nullptr),
            cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  if (rows == 0) return;
  const std::vector<float> got = dout.Download();
  EXPECT_LT(testing::RelativeError(got, want), testing::Tolerance(type))
      << testing::Name(type) << " heads " << shape.num_heads << "/" << shape.num_kv_heads << " d " << shape.head_dim;
}

class PagedAttentionCudaTest : public ::testing::TestWithParam<ScalarType> {
 protected:
  void SetUp() override {
    if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(PagedAttentionCudaTest, DecodeBatchAcrossGqaRatiosAndHeadDims) {
  for (int32_t group : {1, 4, 8}) {
    for (int32_t head_dim : {64, 128}) {
      RunCase(GetParam(), {8, 8 / group, head_dim, 16,
                           {{1, 1}, {1, 17}, {1, 16}, {1, 300}, {1, 64}}},
              7 + group + head_dim);
    }
  }
}

TEST_P(PagedAttentionCudaTest, ChunkedPrefillOverPriorContext) {
  RunCase(GetParam(), {8, 2, 128, 16, {{37, 37}, {20, 85}, {16, 32}}}, 11);
}

TEST_P(PagedAttentionCudaTest, OneTokenBlockExactlyFullAndEmptyBatch) {
  RunCase(GetParam(), {4, 4, 64, 16, {{1, 1}}}, 3);
  RunCase(GetParam(), {4, 1, 64, 8, {{8, 8}, {1, 16}}}, 4);
  RunCase(GetParam(), {4, 1, 64, 8, {}}, 5);
}

TEST_P(PagedAttentionCudaTest, HeadDimsThatAreNotMultiplesOf32) {
  RunCase(GetParam(), {4, 2, 16, 4, {{7, 7}, {1, 9}}}, 21);
  RunCase(GetParam(), {4, 4, 80, 16, {{3, 20}}}, 22);
}

TEST_P(PagedAttentionCudaTest, SlidingWindow) {
  RunCase(GetParam(), {8, 2, 64, 16, {{5, 70}, {1, 40}}, 24}, 9);
}

TEST_P(PagedAttentionCudaTest, WriteKvStoresRowsAtSlots) {
  const ScalarType type = GetParam();
  const int32_t kv_heads = 2, head_dim = 64, tokens = 6;
  const int64_t width = kv_heads * head_dim;
  std::vector<float> k(tokens * width), v(tokens * width);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (auto& x : k) x = normal(rng);
  for (auto& x : v) x = normal(rng);
  // -1: a padding row, which must leave the cache untouched.
  const std::vector<int32_t> slots = {9, 0, 31, 4, -1, 17};
  DeviceArray dk(type, k.size()), dv(type, v.size()), kc(type, 32 * width), vc(type, 32 * width);
  dk.Upload(k);
  dv.Upload(v);
  std::vector<float> zeros(32 * width, 0.0f);
  kc.Upload(zeros);
  vc.Upload(zeros);
  DeviceVector<int32_t> d_slots(slots);
  ASSERT_EQ(LaunchWriteKv(type, tokens, kv_heads, head_dim, dk.data(), width, dv.data(), width, d_slots.data(),
                          kc.data(), vc.data(), nullptr),
            cudaSuccess);
  std::vector<float> want_k(32 * width, 0.0f), want_v(32 * width, 0.0f);
  WriteKvReference(tokens, kv_heads, head_dim, k.data(), width, v.data(), width, slots.data(), want_k.data(),
                   want_v.data());
  EXPECT_EQ(kc.Download(), want_k);
  EXPECT_EQ(vc.Download(), want_v);
}

TEST_P(PagedAttentionCudaTest, RejectsUnsupportedHeadDim) {
  PagedAttentionParams p;
  p.num_heads = 2;
  p.num_kv_heads = 1;
  p.head_dim = 288;
  EXPECT_EQ(LaunchPagedAttention(GetParam(), p, 1, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr),
            cudaErrorInvalidValue);
}

INSTANTIATE_TEST_SUITE_P(Types, PagedAttentionCudaTest,
                         ::testing::Values(ScalarType::kF32, ScalarType::kF16, ScalarType::kBF16),
                         [](const auto& info) { return std::string(testing::Name(info.param)); });

}  // namespace
}  // namespace tern::kernels
