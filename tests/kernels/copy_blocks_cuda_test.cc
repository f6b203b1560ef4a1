// The batched KV block copy against its CPU reference: pools of random
// bytes, random (src, dst) pairs; no pair, one pair, more pairs than one
// launch carries, blocks that are not a whole number of 16-byte words, one
// pool and many (a 2 x 80-layer model), and block ids out of range.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cache/copy_blocks.h"
#include "tests/kernels/cuda_test_util.h"

namespace tern::kernels {
namespace {

class CopyBlocksCudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::HaveGpu()) GTEST_SKIP() << "no CUDA device";
  }
};

// Distinct destinations, none of them a source.
void RandomPairs(int32_t num_blocks, int32_t num_pairs, std::mt19937& rng, std::vector<int32_t>* src,
                 std::vector<int32_t>* dst) {
  std::vector<int32_t> ids(num_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  dst->assign(ids.begin(), ids.begin() + num_pairs);
  std::uniform_int_distribution<size_t> pick(size_t(num_pairs), ids.size() - 1);
  src->clear();
  for (int32_t i = 0; i < num_pairs; ++i) src->push_back(ids[pick(rng)]);  // sources may repeat
}

TEST_F(CopyBlocksCudaTest, MatchesTheReference) {
  struct Case {
    int32_t num_pools, num_blocks, num_pairs;
    int64_t block_bytes;
  };
  for (const Case c : {Case{2, 8, 0, 256}, Case{2, 8, 1, 256}, Case{1, 4, 1, 16}, Case{4, 700, 300, 4096},
                       Case{160, 40, 17, 8192}, Case{3, 600, 257, 24}, Case{6, 64, 5, 40}}) {
    SCOPED_TRACE(::testing::Message() << c.num_pools << " pools, " << c.num_blocks << " blocks, " << c.num_pairs
                                      << " pairs, " << c.block_bytes << " bytes");
    std::mt19937 rng(uint32_t(c.num_pools * 7919 + c.num_pairs * 31 + c.block_bytes));
    std::uniform_int_distribution<int> byte(0, 255);
    const size_t pool_bytes = size_t(c.num_blocks) * size_t(c.block_bytes);
    std::vector<std::vector<unsigned char>> host(c.num_pools, std::vector<unsigned char>(pool_bytes));
    std::vector<void*> device(c.num_pools, nullptr), host_ptrs(c.num_pools, nullptr);
    for (int32_t p = 0; p < c.num_pools; ++p) {
      for (auto& b : host[p]) b = static_cast<unsigned char>(byte(rng));
      ASSERT_EQ(cudaMalloc(&device[p], pool_bytes), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(device[p], host[p].data(), pool_bytes, cudaMemcpyHostToDevice), cudaSuccess);
      host_ptrs[p] = host[p].data();
    }
    void** pools = nullptr;
    ASSERT_EQ(cudaMalloc(&pools, sizeof(void*) * c.num_pools), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(pools, device.data(), sizeof(void*) * c.num_pools, cudaMemcpyHostToDevice), cudaSuccess);
    std::vector<int32_t> src, dst;
    RandomPairs(c.num_blocks, c.num_pairs, rng, &src, &dst);

    CopyBlocksParams params;
    params.num_pools = c.num_pools;
    params.num_blocks = c.num_blocks;
    params.block_bytes = c.block_bytes;
    params.num_pairs = c.num_pairs;
    params.src = src.data();
    params.dst = dst.data();
    params.pools = pools;
    ASSERT_EQ(LaunchCopyBlocks(params, nullptr), cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    params.pools = host_ptrs.data();
    ASSERT_TRUE(CopyBlocksReference(params));
    for (int32_t p = 0; p < c.num_pools; ++p) {
      std::vector<unsigned char> got(pool_bytes);
      ASSERT_EQ(cudaMemcpy(got.data(), device[p], pool_bytes, cudaMemcpyDeviceToHost), cudaSuccess);
      EXPECT_TRUE(got == host[p]) << "pool " << p;
      cudaFree(device[p]);
    }
    cudaFree(pools);
  }
}

TEST_F(CopyBlocksCudaTest, RejectsBlockIdsOutOfRangeAndCopiesNothing) {
  std::vector<unsigned char> host(4 * 64, 7);
  void* pool = nullptr;
  ASSERT_EQ(cudaMalloc(&pool, host.size()), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(pool, host.data(), host.size(), cudaMemcpyHostToDevice), cudaSuccess);
  void** pools = nullptr;
  ASSERT_EQ(cudaMalloc(&pools, sizeof(void*)), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(pools, &pool, sizeof(void*), cudaMemcpyHostToDevice), cudaSuccess);
  const std::vector<int32_t> src = {0, 1}, dst = {2, 4};  // 4 is outside [0, 4)
  CopyBlocksParams params;
  params.pools = pools;
  params.num_pools = 1;
  params.num_blocks = 4;
  params.block_bytes = 64;
  params.num_pairs = 2;
  params.src = src.data();
  params.dst = dst.data();
  EXPECT_EQ(LaunchCopyBlocks(params, nullptr), cudaErrorInvalidValue);
  params.dst = src.data();
  params.src = dst.data();
  EXPECT_EQ(LaunchCopyBlocks(params, nullptr), cudaErrorInvalidValue);
  params.block_bytes = 0;
  EXPECT_EQ(LaunchCopyBlocks(params, nullptr), cudaErrorInvalidValue);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<unsigned char> got(host.size());
  ASSERT_EQ(cudaMemcpy(got.data(), pool, got.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_TRUE(got == host);
  void* host_pool = host.data();
  params.pools = &host_pool;
  params.block_bytes = 64;
  EXPECT_FALSE(CopyBlocksReference(params));
  cudaFree(pool);
  cudaFree(pools);
}

}  // namespace
}  // namespace tern::kernels
