#include "scheduler/block_manager.h"

#include <vector>

#include "gtest/gtest.h"

namespace tern::scheduler {
namespace {

BlockManager Make(int32_t num_blocks, int32_t block_size = 4, bool caching = true) {
  return BlockManager(BlockManagerOptions{num_blocks, block_size, caching});
}

std::vector<int32_t> Iota(int32_t n, int32_t start = 0) {
  std::vector<int32_t> v(n);
  for (int32_t i = 0; i < n; ++i) v[i] = start + i;
  return v;
}

TEST(BlockManagerTest, AllocateUntilEmptyThenReportsNothing) {
  BlockManager bm = Make(3);
  std::vector<int32_t> got;
  for (int i = 0; i < 3; ++i) {
    auto b = bm.Allocate();
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(bm.ref_count(*b), 1);
    got.push_back(*b);
  }
  EXPECT_FALSE(bm.Allocate().has_value());
  EXPECT_EQ(bm.num_free(), 0);
  EXPECT_EQ(bm.stats().num_used, 3);
  bm.Release(got[1]);
  EXPECT_EQ(bm.num_free(), 1);
  EXPECT_EQ(bm.Allocate(), got[1]);
}

TEST(BlockManagerTest, RefCountsOfForkedTables) {
  BlockManager bm = Make(8);
  BlockTable a;
  BlockCopies copies;
  ASSERT_TRUE(bm.PrepareWrite(&a, 0, 10, &copies));  // 3 blocks of 4
  EXPECT_EQ(a.size(), 3u);
  EXPECT_TRUE(copies.empty());
  BlockTable b;
  bm.Fork(a, &b);
  EXPECT_EQ(a, b);
  for (int32_t blk : a) EXPECT_EQ(bm.ref_count(blk), 2);
  EXPECT_EQ(bm.num_free(), 5);
  bm.ReleaseTable(&a);
  EXPECT_TRUE(a.empty());
  for (int32_t blk : b) EXPECT_EQ(bm.ref_count(blk), 1);
  EXPECT_EQ(bm.num_free(), 5);
  bm.ReleaseTable(&b);
  EXPECT_EQ(bm.num_free(), 8);
}

TEST(BlockManagerTest, CopyOnWriteOfSharedPartialLastBlock) {
  BlockManager bm = Make(8);
  BlockTable parent;
  BlockCopies copies;
  ASSERT_TRUE(bm.PrepareWrite(&parent, 0, 6, &copies));  // blocks: [full, 2 of 4]
  BlockTable child;
  bm.Fork(parent, &child);
  const int32_t shared_full = parent[0], shared_last = parent[1];
  // The child writes position 6: the shared partial block is copied.
  ASSERT_TRUE(bm.PrepareWrite(&child, 6, 7, &copies));
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0].first, shared_last);
  EXPECT_EQ(copies[0].second, child[1]);
  EXPECT_NE(child[1], shared_last);
  EXPECT_EQ(child[0], shared_full);           // the full block stays shared
  EXPECT_EQ(bm.ref_count(shared_full), 2);
  EXPECT_EQ(bm.ref_count(shared_last), 1);    // now the parent's alone
  // The parent now writes in place: no copy.
  copies.clear();
  ASSERT_TRUE(bm.PrepareWrite(&parent, 6, 7, &copies));
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(parent[1], shared_last);
  EXPECT_EQ(bm.stats().cow_copies, 1);
}

TEST(BlockManagerTest, PrepareWriteIsAllOrNothing) {
  BlockManager bm = Make(3);
  BlockTable a;
  BlockCopies copies;
  ASSERT_TRUE(bm.PrepareWrite(&a, 0, 8, &copies));  // 2 blocks
  BlockTable b;
  EXPECT_EQ(bm.BlocksNeededToWrite(b, 0, 12), 3);
  EXPECT_FALSE(bm.PrepareWrite(&b, 0, 12, &copies));
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(bm.num_free(), 1);
  EXPECT_TRUE(bm.PrepareWrite(&b, 0, 4, &copies));
}

TEST(BlockManagerTest, PrefixHitSharesCachedFullBlocksOnly) {
  BlockManager bm = Make(8);
  const uint64_t salt = BlockManager::HashTenant("acme");
  const std::vector<int32_t> tokens = Iota(10);  // 2 full blocks + 2 tokens
  std::vector<uint64_t> hashes;
  bm.ExtendHashes(salt, tokens, &hashes);
  ASSERT_EQ(hashes.size(), 2u);
  BlockTable a;
  BlockCopies copies;
  ASSERT_TRUE(bm.PrepareWrite(&a, 0, 10, &copies));
  for (int32_t i = 0; i < 2; ++i) bm.CacheFullBlock(salt, a, i, hashes, tokens);
  EXPECT_EQ(bm.block_hash(a[0]), hashes[0]);
  EXPECT_FALSE(bm.block_hash(a[2]).has_value());

  BlockTable b;
  EXPECT_EQ(bm.MatchPrefix(salt, hashes, tokens, 10, &b), 2);
  EXPECT_EQ(b, BlockTable(a.begin(), a.begin() + 2));
  EXPECT_EQ(bm.ref_count(a[0]), 2);
  EXPECT_EQ(bm.stats().prefix_queries, 2);
  EXPECT_EQ(bm.stats().prefix_hits, 2);
  // max_blocks caps the hit.
  BlockTable c;
  EXPECT_EQ(bm.MatchPrefix(salt, hashes, tokens, 1, &c), 1);
}

TEST(BlockManagerTest, WriteIntoACachedBlockHeldOnceCopiesIt) {
  BlockManager bm = Make(8);
  const uint64_t salt = BlockManager::HashTenant("acme");
  const std::vector<int32_t> tokens = Iota(8);  // 2 full blocks
  std::vector<uint64_t> hashes;
  bm.ExtendHashes(salt, tokens, &hashes);
  BlockTable a;
  BlockCopies copies;
  ASSERT_TRUE(bm.PrepareWrite(&a, 0, 8, &copies));
  for (int32_t i = 0; i < 2; ++i) bm.CacheFullBlock(salt, a, i, hashes, tokens);
  const BlockTable published = a;
  bm.ReleaseTable(&a);
  // A full hit held by this table alone (ref 1) that recomputes the last
  // token: the published block is copied, not written.
  BlockTable b;
  ASSERT_EQ(bm.MatchPrefix(salt, hashes, tokens, 2, &b), 2);
  EXPECT_EQ(bm.ref_count(published[1]), 1);
  EXPECT_EQ(bm.BlocksNeededToWrite(b, 7, 8), 1);
  ASSERT_TRUE(bm.PrepareWrite(&b, 7, 8, &copies));
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0], std::make_pair(published[1], b[1]));
  EXPECT_EQ(b[0], published[0]);
  EXPECT_NE(b[1], published[1]);
  EXPECT_EQ(bm.block_hash(published[1]), hashes[1]);  // still published, now free
  EXPECT_EQ(bm.ref_count(published[1]), 0);
  EXPECT_FALSE(bm.block_hash(b[1]).has_value());
  // Published again under the same hash: the copy stays uncached.
  bm.CacheFullBlock(salt, b, 1, hashes, tokens);
  EXPECT_FALSE(bm.block_hash(b[1]).has_value());
  // An uncached block held once is written in place.
  copies.clear();
  BlockTable c;
  ASSERT_TRUE(bm.PrepareWrite(&c, 0, 3, &copies));
  ASSERT_TRUE(bm.PrepareWrite(&c, 3, 4, &copies));
  EXPECT_TRUE(copies.empty());
}

TEST(BlockManagerTest, HashesAreSaltedByTenant) {
  BlockManager bm = Make(8);
  const std::vector<int32_t> tokens = Iota(8);
  const uint64_t acme = BlockManager::HashTenant("acme"), beta = BlockManager::HashTenant("beta");
  std::vector<uint64_t> ha, hb;
  bm.ExtendHashes(acme, tokens, &ha);
  bm.ExtendHashes(beta, tokens, &hb);
  EXPECT_NE(ha[0], hb[0]);
  EXPECT_NE(ha[1], hb[1]);
  BlockTable a;
  BlockCopies copies;
  ASSERT_TRUE(bm.PrepareWrite(&a, 0, 8, &copies));
  bm.CacheFullBlock(acme, a, 0, ha, tokens);
  bm.CacheFullBlock(acme, a, 1, ha, tokens);
  BlockTable other;
  EXPECT_EQ(bm.MatchPrefix(beta, hb, tokens, 2, &other), 0);
  // A forged chain that reuses acme's hashes under another salt is refused
  // by the stored parent check.
  EXPECT_EQ(bm.MatchPrefix(beta, ha, tokens, 2, &other), 0);
  EXPECT_EQ(bm.MatchPrefix(acme, ha, tokens, 2, &other), 2);
}

TEST(BlockManagerTest, DifferentContentMisses) {
  BlockManager bm = Make(8);
  const uint64_t salt = BlockManager::HashTenant("t");
  std::vector<int32_t> tokens = Iota(8);
  std::vector<uint64_t> h;
  bm.ExtendHashes(salt, tokens, &h);
  BlockTable a;
  BlockCopies copies;
  ASSERT_TRUE(bm.PrepareWrite(&a, 0, 8, &copies));
  bm.CacheFullBlock(salt, a, 0, h, tokens);
  bm.CacheFullBlock(salt, a, 1, h, tokens);
  std::vector<int32_t> other = tokens;
  other[5] = 99;  // second block differs
  std::vector<uint64_t> h2;
  bm.ExtendHashes(salt, other, &h2);
  EXPECT_EQ(h2[0], h[0]);
  EXPECT_NE(h2[1], h[1]);
  BlockTable b;
  EXPECT_EQ(bm.MatchPrefix(salt, h2, other, 2, &b), 1);
}

TEST(BlockManagerTest, FreedCachedBlocksStayReusableUntilEvictedInLruOrder) {
  BlockManager bm = Make(4, 2);
  const uint64_t salt = BlockManager::HashTenant("t");
  const std::vector<int32_t> tokens = Iota(6);  // 3 full blocks
  std::vector<uint64_t> h;
  bm.ExtendHashes(salt, tokens, &h);
  BlockTable a;
  BlockCopies copies;
  ASSERT_TRUE(bm.PrepareWrite(&a, 0, 6, &copies));
  for (int32_t i = 0; i < 3; ++i) bm.CacheFullBlock(salt, a, i, h, tokens);
  const BlockTable original = a;
  bm.ReleaseTable(&a);  // last block first
  EXPECT_EQ(bm.num_free(), 4);
  EXPECT_EQ(bm.stats().num_cached_free, 3);
  EXPECT_EQ(bm.EvictionOrder(), (std::vector<int32_t>{original[2], original[1], original[0]}));

  // The uncached free block goes first, then the LRU cached one (the tail).
  auto x = bm.Allocate();
  EXPECT_TRUE(x.has_value());
  EXPECT_EQ(std::count(original.begin(), original.end(), *x), 0);
  EXPECT_EQ(bm.stats().evictions, 0);
  auto y = bm.Allocate();
  EXPECT_EQ(y, original[2]);
  EXPECT_EQ(bm.stats().evictions, 1);
  EXPECT_FALSE(bm.block_hash(original[2]).has_value());

  // The first two blocks are still a hit; reviving them takes them off the free list.
  BlockTable b;
  EXPECT_EQ(bm.MatchPrefix(salt, h, tokens, 3, &b), 2);
  EXPECT_EQ(b, BlockTable(original.begin(), original.begin() + 2));
  EXPECT_EQ(bm.num_free(), 0);
  EXPECT_EQ(bm.stats().num_cached_free, 0);
  EXPECT_FALSE(bm.Allocate().has_value());
}

TEST(BlockManagerTest, ReviveMovesBlockToMostRecentlyFreed) {
  BlockManager bm = Make(2, 2);
  const uint64_t salt = BlockManager::HashTenant("t");
  const std::vector<int32_t> tokens = Iota(4);
  std::vector<uint64_t> h;
  bm.ExtendHashes(salt, tokens, &h);
  BlockTable a;
  BlockCopies copies;
  ASSERT_TRUE(bm.PrepareWrite(&a, 0, 4, &copies));
  bm.CacheFullBlock(salt, a, 0, h, tokens);
  bm.CacheFullBlock(salt, a, 1, h, tokens);
  const BlockTable original = a;
  bm.ReleaseTable(&a);
  EXPECT_EQ(bm.EvictionOrder(), (std::vector<int32_t>{original[1], original[0]}));
  BlockTable b;
  ASSERT_EQ(bm.MatchPrefix(salt, h, tokens, 1, &b), 1);
  bm.ReleaseTable(&b);
  EXPECT_EQ(bm.EvictionOrder(), (std::vector<int32_t>{original[1], original[0]}));
  BlockTable c;
  ASSERT_EQ(bm.MatchPrefix(salt, h, tokens, 2, &c), 2);
  bm.Release(c[0]);  // now block 0 is freed after block 1
  EXPECT_EQ(bm.EvictionOrder(), (std::vector<int32_t>{original[0]}));
}

TEST(BlockManagerTest, CachingOffNeverHits) {
  BlockManager bm = Make(4, 2, /*caching=*/false);
  const uint64_t salt = BlockManager::HashTenant("t");
  const std::vector<int32_t> tokens = Iota(4);
  std::vector<uint64_t> h;
  bm.ExtendHashes(salt, tokens, &h);
  BlockTable a;
  BlockCopies copies;
  ASSERT_TRUE(bm.PrepareWrite(&a, 0, 4, &copies));
  bm.CacheFullBlock(salt, a, 0, h, tokens);
  BlockTable b;
  EXPECT_EQ(bm.MatchPrefix(salt, h, tokens, 2, &b), 0);
  EXPECT_FALSE(bm.block_hash(a[0]).has_value());
}

TEST(BlockManagerTest, DuplicateContentStaysUncached) {
  BlockManager bm = Make(4, 2);
  const uint64_t salt = BlockManager::HashTenant("t");
  const std::vector<int32_t> tokens = Iota(2);
  std::vector<uint64_t> h;
  bm.ExtendHashes(salt, tokens, &h);
  BlockTable a, b;
  BlockCopies copies;
  ASSERT_TRUE(bm.PrepareWrite(&a, 0, 2, &copies));
  ASSERT_TRUE(bm.PrepareWrite(&b, 0, 2, &copies));
  bm.CacheFullBlock(salt, a, 0, h, tokens);
  bm.CacheFullBlock(salt, b, 0, h, tokens);
  EXPECT_TRUE(bm.block_hash(a[0]).has_value());
  EXPECT_FALSE(bm.block_hash(b[0]).has_value());
}

TEST(BlockManagerDeathTest, DoubleFreeChecks) {
  BlockManager bm = Make(2);
  auto b = bm.Allocate();
  bm.Release(*b);
  // CHECK logs through spdlog (stdout), so only the abort itself is matched.
  EXPECT_DEATH(bm.Release(*b), "");
}

}  // namespace
}  // namespace tern::scheduler
