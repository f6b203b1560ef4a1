// The CUDA backend's decode graph keys (host arithmetic; needs no GPU).
#include "runtime/cuda/decode_graph_keys.h"

#include <set>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace tern::runtime {
namespace {

TEST(DecodeGraphKeysTest, BucketsAndCapacities) {
  EXPECT_EQ(GraphBatchBucket(0), 0);
  EXPECT_EQ(GraphBatchBucket(1), 1);
  EXPECT_EQ(GraphBatchBucket(3), 4);
  EXPECT_EQ(GraphBatchBucket(5), 8);
  EXPECT_EQ(GraphBatchBucket(250), 256);
  EXPECT_EQ(GraphBatchBucket(kMaxGraphBatch + 1), 0);
  EXPECT_TRUE(IsGraphBucket(16));
  EXPECT_FALSE(IsGraphBucket(12));
  EXPECT_EQ(ContextCapacity({}), 256);
  EXPECT_EQ(ContextCapacity({3, 256}), 256);
  EXPECT_EQ(ContextCapacity({257, 9}), 512);
}

// Every (bucket, capacity) a server of 20 sequences and 600 tokens can meet
// appears once, the largest first, each warmed at a context of its capacity.
TEST(DecodeGraphKeysTest, ShapesCoverEveryKeyLargestFirst) {
  const auto shapes = DecodeGraphKeyShapes(20, 600);
  std::set<std::pair<int32_t, int32_t>> keys;
  for (const auto& [seqs, context] : shapes) {
    EXPECT_TRUE(IsGraphBucket(seqs)) << seqs;
    EXPECT_LE(context, 600);
    keys.insert({seqs, ContextCapacity({context})});
  }
  EXPECT_EQ(keys.size(), shapes.size());
  std::set<std::pair<int32_t, int32_t>> want;
  for (int32_t seqs : {1, 2, 4, 8, 16, 24}) {
    for (int32_t capacity : {256, 512, 1024}) want.insert({seqs, capacity});
  }
  EXPECT_EQ(keys, want);
  ASSERT_FALSE(shapes.empty());
  EXPECT_EQ(shapes.front().first, 24);
  EXPECT_EQ(ContextCapacity({shapes.front().second}), 1024);
  EXPECT_TRUE(DecodeGraphKeyShapes(0, 600).empty());
  EXPECT_TRUE(DecodeGraphKeyShapes(4, 0).empty());
}

}  // namespace
}  // namespace tern::runtime
