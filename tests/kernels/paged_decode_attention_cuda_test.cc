// GPU split-context decode attention against the CPU reference, over dtypes,
// GQA ratios, head dims, partition boundaries, long and unequal contexts, a
// capacity above every context, sliding windows, an empty batch, and replay
// of one captured CUDA graph with new context lengths.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <sstream>

#include "gtest/gtest.h"
#include "kernels/attention/paged_decode_attention.h"
#include "tests/kernels/cuda_test_util.h"

namespace tern::kernels {
namespace {

using testing::DeviceArray;
using testing::DeviceVector;

constexpr int32_t kPart = kDecodePartitionTokens;

struct Shape {
  int32_t num_heads, num_kv_heads, head_dim, block_size;
  std::vector<int32_t> contexts;  // per sequence, this step's token included
  int32_t sliding_window = 0;
  int32_t max_context = -1;  // launch capacity; -1: the longest context
};

// A batch on the host: random q and caches, block tables over a shuffled
// block pool, each sequence owning `blocks_per_seq[s]` blocks.
struct Batch {
  std::vector<int32_t> context_lens, block_indptr = {0}, block_ids, query_start;
  std::vector<float> q, k, v;
  int64_t q_width = 0;
};

Batch MakeBatch(ScalarType type, const Shape& shape, const std::vector<int32_t>& blocks_per_seq, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Batch b;
  const int32_t num_seqs = int32_t(shape.contexts.size());
  const int32_t blocks_needed = std::accumulate(blocks_per_seq.begin(), blocks_per_seq.end(), 0);
  const int32_t num_blocks = blocks_needed + 3;
  std::vector<int32_t> pool(num_blocks);
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  for (int32_t s = 0; s < num_seqs; ++s) {
    b.context_lens.push_back(shape.contexts[s]);
    for (int32_t i = 0; i < blocks_per_seq[s]; ++i) {
      b.block_ids.push_back(pool.back());
      pool.pop_back();
    }
    b.block_indptr.push_back(int32_t(b.block_ids.size()));
  }
  b.query_start.resize(num_seqs + 1);
  std::iota(b.query_start.begin(), b.query_start.end(), 0);
  b.q_width = int64_t(shape.num_heads) * shape.head_dim;
  const int64_t cache_elems = int64_t(num_blocks) * shape.block_size * shape.num_kv_heads * shape.head_dim;
  b.q.resize(size_t(num_seqs) * b.q_width);
  b.k.resize(cache_elems);
  b.v.resize(cache_elems);
  for (auto& x : b.q) x = testing::Round(type, normal(rng));
  for (auto& x : b.k) x = testing::Round(type, normal(rng));
  for (auto& x : b.v) x = testing::Round(type, normal(rng));
  return b;
}

PagedAttentionParams HostParams(const Shape& shape, const Batch& b) {
  PagedAttentionParams p;
  p.num_seqs = int32_t(shape.contexts.size());
  p.num_heads = shape.num_heads;
  p.num_kv_heads = shape.num_kv_heads;
  p.head_dim = shape.head_dim;
  p.block_size = shape.block_size;
  p.scale = 1.0f / std::sqrt(float(shape.head_dim));
  p.sliding_window = shape.sliding_window;
  p.q_row_stride = b.q_width;
  p.out_row_stride = b.q_width;
  p.query_start = b.query_start.data();
  p.context_lens = b.context_lens.data();
  p.block_indptr = b.block_indptr.data();
  p.block_ids = b.block_ids.data();
  return p;
}

std::vector<float> Reference(const Shape& shape, const Batch& b) {
  std::vector<float> want(b.q.size());
  PagedAttentionReference(HostParams(shape, b), b.q.data(), b.k.data(), b.v.data(), want.data(), 0,
                          int32_t(shape.contexts.size()));
  return want;
}

// Device copies of a batch and the workspace its launch needs.
struct DeviceBatch {
  DeviceBatch(ScalarType type, const Batch& b, size_t workspace_bytes)
      : q(type, b.q.size()), k(type, b.k.size()), v(type, b.v.size()), out(type, b.q.size()),
        context_lens(b.context_lens), block_indptr(b.block_indptr), block_ids(b.block_ids),
        workspace(ScalarType::kF32, workspace_bytes / 4) {
    std::vector<float> copy = b.q;
    q.Upload(copy);
    copy = b.k;
    k.Upload(copy);
    copy = b.v;
    v.Upload(copy);
  }
  PagedAttentionParams Params(PagedAttentionParams p) const {
    p.query_start = nullptr;
    p.context_lens = context_lens.data();
    p.block_indptr = block_indptr.data();
    p.block_ids = block_ids.data();
    return p;
  }
  DeviceArray q, k, v, out;
  DeviceVector<int32_t> context_lens, block_indptr, block_ids;
  DeviceArray workspace;
};

std::string Describe(ScalarType type, const Shape& shape) {
  std::ostringstream text;
  text << testing::Name(type) << " heads " << shape.num_heads << "/" << shape.num_kv_heads << " d "
       << shape.head_dim << " block " << shape.block_size << " window " << shape.sliding_window << " contexts";
  for (int32_t c : shape.contexts) text << " " << c;
  return text.str();
}

void RunCase(ScalarType type, const Shape& shape, uint32_t seed) {
  std::mt19937 rng(seed);
  int32_t longest = 0;
  for (int32_t c : shape.contexts) longest = std::max(longest, c);
  const int32_t max_context = shape.max_context >= 0 ? shape.max_context : longest;
  std::vector<int32_t> blocks_per_seq;
  for (int32_t c : shape.contexts) blocks_per_seq.push_back((c + shape.block_size - 1) / shape.block_size);
  const Batch b = MakeBatch(type, shape, blocks_per_seq, rng);
  const std::vector<float> want = Reference(shape, b);

  const int32_t num_seqs = int32_t(shape.contexts.size());
  const size_t workspace_bytes = PagedDecodeAttentionWorkspaceBytes(HostParams(shape, b), max_context);
  DeviceBatch d(type, b, workspace_bytes);
  const PagedAttentionParams p = d.Params(HostParams(shape, b));
  ASSERT_TRUE(SupportsPagedDecodeAttention(p)) << Describe(type, shape);
  ASSERT_EQ(LaunchPagedDecodeAttention(type, p, max_context, d.q.data(), d.k.data(), d.v.data(), d.out.data(),
                                       d.workspace.data(), workspace_bytes, nullptr),
            cudaSuccess)
      << Describe(type, shape);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  if (num_seqs == 0) return;
  EXPECT_LT(testing::RelativeError(d.out.Download(), want), testing::Tolerance(type)) << Describe(type, shape);
}

class PagedDecodeAttentionCudaTest : public ::testing::TestWithParam<ScalarType> {
 protected:
  void SetUp() override {
    if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  }
};

TEST_P(PagedDecodeAttentionCudaTest, GqaRatiosAndHeadDimsAcrossPartitions) {
  for (int32_t group : {1, 3, 4, 8}) {
    for (int32_t head_dim : {64, 128}) {
      RunCase(GetParam(), {8 * group, 8, head_dim, 16, {1, 17, 300, 700, 64}},
              100 + group * 7 + head_dim);
      RunCase(GetParam(), {2 * group, 2, head_dim, 16, {1, 17, 300, 700, 64}}, 200 + group * 7 + head_dim);
    }
  }
}

TEST_P(PagedDecodeAttentionCudaTest, OneTokenAndABlockExactlyFull) {
  RunCase(GetParam(), {4, 4, 64, 16, {1}}, 3);
  RunCase(GetParam(), {4, 1, 128, 16, {16}}, 4);
  RunCase(GetParam(), {8, 2, 128, 8, {8, 1, 16}}, 5);
}

// Partitions shrink from 256 tokens to 64 while a launch has fewer than 256
// blocks (sequences x kv heads x partitions).
TEST(PagedDecodePartitionTokens, ShrinkForSmallLaunches) {
  PagedAttentionParams p;
  p.num_heads = 32;
  p.num_kv_heads = 32;
  p.head_dim = 128;
  p.num_seqs = 1;
  EXPECT_EQ(PagedDecodePartitionTokens(p, 192), 64);   // Llama-2-7B, batch 1: 3 x 32 blocks
  EXPECT_EQ(PagedDecodePartitionTokens(p, 1024), 128);  // 8 x 32 blocks at 128
  EXPECT_EQ(PagedDecodePartitionTokens(p, 4096), 256);  // 16 x 32 blocks at 256
  p.num_seqs = 8;
  EXPECT_EQ(PagedDecodePartitionTokens(p, 1024), 256);
  p.num_kv_heads = 8;
  p.num_seqs = 1;
  EXPECT_EQ(PagedDecodePartitionTokens(p, 100000), 256);
  p.sliding_window = 100;  // the window, not the capacity, bounds the span
  EXPECT_EQ(PagedDecodePartitionTokens(p, 100000), 64);
}

TEST_P(PagedDecodeAttentionCudaTest, PartitionBoundaries) {
  for (int32_t block_size : {16, 7}) {
    // Few blocks: 64-token partitions.
    RunCase(GetParam(), {8, 2, 128, block_size, {63, 64, 65}}, 30 + block_size);
    RunCase(GetParam(), {4, 4, 64, block_size, {127, 128, 129}}, 40 + block_size);
    // 32 sequences x 8 kv heads: 256-token partitions.
    std::vector<int32_t> contexts;
    for (int i = 0; i < 32; ++i) contexts.push_back(kPart - 1 + i % 3);
    RunCase(GetParam(), {8, 8, 64, block_size, contexts}, 50 + block_size);
    contexts.clear();
    for (int i = 0; i < 32; ++i) contexts.push_back(2 * kPart - 1 + i % 3);
    RunCase(GetParam(), {16, 8, 128, block_size, contexts}, 60 + block_size);
  }
}

TEST_P(PagedDecodeAttentionCudaTest, LongContexts) {
  RunCase(GetParam(), {8, 8, 128, 16, {4096, 4103}}, 50);
  RunCase(GetParam(), {32, 8, 128, 16, {4100}}, 51);
  RunCase(GetParam(), {16, 2, 64, 32, {5000, 1}}, 52);
}

TEST_P(PagedDecodeAttentionCudaTest, ManyUnequalSequencesBelowACapacity) {
  std::mt19937 rng(60);
  std::uniform_int_distribution<int32_t> length(1, 1500);
  std::vector<int32_t> contexts(48);
  for (auto& c : contexts) c = length(rng);
  RunCase(GetParam(), {8, 2, 128, 16, contexts, 0, 3000}, 61);
  RunCase(GetParam(), {4, 4, 64, 16, {1, 2, 3}, 0, 2000}, 62);
}

TEST_P(PagedDecodeAttentionCudaTest, SlidingWindow) {
  RunCase(GetParam(), {8, 2, 64, 16, {70, 40, 1000, 3}, 24}, 70);
  RunCase(GetParam(), {8, 4, 128, 16, {1000, 700, 200, 2 * kPart + 5}, 300}, 71);
  RunCase(GetParam(), {8, 4, 128, 16, {1000, 600}, kPart, 4000}, 72);
}

TEST_P(PagedDecodeAttentionCudaTest, EmptyBatchAndEmptyContext) {
  RunCase(GetParam(), {4, 1, 64, 8, {}}, 80);
  RunCase(GetParam(), {4, 1, 64, 8, {}, 0, 4096}, 81);
  // A sequence with no cached tokens attends to nothing: zeros, as the reference.
  RunCase(GetParam(), {4, 2, 64, 8, {0, 300, 5}}, 82);
}

TEST_P(PagedDecodeAttentionCudaTest, ContextAboveCapacityGivesNanRows) {
  const ScalarType type = GetParam();
  const Shape shape{4, 2, 64, 16, {100, 900}};
  std::mt19937 rng(90);
  const Batch b = MakeBatch(type, shape, {7, 57}, rng);
  const std::vector<float> want = Reference(shape, b);
  const int32_t max_context = 600;
  const size_t bytes = PagedDecodeAttentionWorkspaceBytes(HostParams(shape, b), max_context);
  DeviceBatch d(type, b, bytes);
  ASSERT_EQ(LaunchPagedDecodeAttention(type, d.Params(HostParams(shape, b)), max_context, d.q.data(), d.k.data(),
                                       d.v.data(), d.out.data(), d.workspace.data(), bytes, nullptr),
            cudaSuccess);
  const std::vector<float> got = d.out.Download();
  const size_t width = size_t(b.q_width);
  const std::vector<float> first(got.begin(), got.begin() + width), first_want(want.begin(), want.begin() + width);
  EXPECT_LT(testing::RelativeError(first, first_want), testing::Tolerance(type));
  for (size_t i = width; i < 2 * width; ++i) ASSERT_TRUE(std::isnan(got[i])) << i;
}

TEST_P(PagedDecodeAttentionCudaTest, OneCapturedGraphReplaysWithNewContextLengths) {
  const ScalarType type = GetParam();
  const int32_t max_context = 1200, block_size = 16;
  Shape shape{8, 2, 128, block_size, {5, 900, 300}, 0, max_context};
  std::mt19937 rng(95);
  const std::vector<int32_t> blocks_per_seq(3, max_context / block_size);
  Batch b = MakeBatch(type, shape, blocks_per_seq, rng);
  const size_t bytes = PagedDecodeAttentionWorkspaceBytes(HostParams(shape, b), max_context);
  DeviceBatch d(type, b, bytes);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  cudaGraph_t graph;
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  ASSERT_EQ(LaunchPagedDecodeAttention(type, d.Params(HostParams(shape, b)), max_context, d.q.data(), d.k.data(),
                                       d.v.data(), d.out.data(), d.workspace.data(), bytes, stream),
            cudaSuccess);
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (const std::vector<int32_t>& contexts :
       {std::vector<int32_t>{5, 900, 300}, {1200, 1, 257}, {256, 513, 1199}}) {
    shape.contexts = contexts;
    b.context_lens = contexts;
    ASSERT_EQ(cudaMemcpy(const_cast<int32_t*>(d.context_lens.data()), contexts.data(), contexts.size() * 4,
                         cudaMemcpyHostToDevice),
              cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    EXPECT_LT(testing::RelativeError(d.out.Download(), Reference(shape, b)), testing::Tolerance(type))
        << Describe(type, shape);
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST_P(PagedDecodeAttentionCudaTest, RejectsWhatItDoesNotSupport) {
  PagedAttentionParams p;
  p.num_seqs = 1;
  p.num_heads = 4;
  p.num_kv_heads = 4;
  p.block_size = 16;
  for (int32_t head_dim : {16, 80, 96, 256}) {
    p.head_dim = head_dim;
    EXPECT_FALSE(SupportsPagedDecodeAttention(p)) << head_dim;
    EXPECT_EQ(LaunchPagedDecodeAttention(GetParam(), p, 16, nullptr, nullptr, nullptr, nullptr, nullptr, 0, nullptr),
              cudaErrorInvalidValue);
  }
  p.head_dim = 128;
  p.num_heads = 64;  // a group of 16
  EXPECT_FALSE(SupportsPagedDecodeAttention(p));
  p.num_heads = 6;  // not a multiple of the kv heads
  EXPECT_FALSE(SupportsPagedDecodeAttention(p));
  // A launch that needs partials but gets too small a workspace.
  p.num_heads = 4;
  DeviceArray cache(GetParam(), 1024);
  const size_t bytes = PagedDecodeAttentionWorkspaceBytes(p, 2 * kPart + 1);
  EXPECT_GT(bytes, 0u);
  EXPECT_EQ(PagedDecodeAttentionWorkspaceBytes(p, 64), 0u);  // one 64-token partition
  DeviceArray workspace(ScalarType::kF32, bytes / 4);
  EXPECT_EQ(LaunchPagedDecodeAttention(GetParam(), p, 2 * kPart + 1, nullptr, cache.data(), cache.data(), nullptr,
                                       workspace.data(), bytes - 4, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(LaunchPagedDecodeAttention(GetParam(), p, -1, nullptr, cache.data(), cache.data(), nullptr, nullptr, 0,
                                       nullptr),
            cudaErrorInvalidValue);
}

INSTANTIATE_TEST_SUITE_P(Types, PagedDecodeAttentionCudaTest,
                         ::testing::Values(ScalarType::kF32, ScalarType::kF16, ScalarType::kBF16),
                         [](const auto& info) { return std::string(testing::Name(info.param)); });

}  // namespace
}  // namespace tern::kernels
