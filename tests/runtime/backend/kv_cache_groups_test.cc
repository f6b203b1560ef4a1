// KV-cache groups (runtime/backend/kv_cache_groups.h, kv_cache_spec.h,
// backend.h's ForwardBatch): the layer partition and its checks, block bytes
// of one group's layers, the grouping of an MoA plan's layers by what they
// read, the group sections of a batch (validation, decode padding), and the
// CPU backend writing and attending each layer through its own group's
// tables: a grouped cache attends exactly as an ungrouped one.
#include <algorithm>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "runtime/backend/backend.h"
#include "runtime/backend/kv_cache_groups.h"
#include "runtime/backend/kv_cache_spec.h"
#include "runtime/cpu/cpu_backend.h"

namespace tern::runtime {
namespace {

KvCacheSpec Spec(int32_t num_layers, std::vector<int32_t> layer_group) {
  KvCacheSpec spec;
  spec.num_layers = num_layers;
  spec.num_blocks = 16;
  spec.block_size = 4;
  spec.num_kv_heads = 2;
  spec.head_dim = 8;
  spec.layer_group = std::move(layer_group);
  return spec;
}

TEST(KvCacheGroupsTest, LayerGroupsPartitionTheLayersEvenly) {
  const KvCacheSpec one = Spec(4, {});
  EXPECT_EQ(one.num_groups(), 1);
  EXPECT_EQ(one.group_layers(), 4);
  EXPECT_EQ(one.LayerSlot(3), 3);
  const KvCacheSpec two = Spec(4, {1, 0, 0, 1});
  ASSERT_TRUE(ValidateKvCacheSpec(two).ok());
  EXPECT_EQ(two.num_groups(), 2);
  EXPECT_EQ(two.group_layers(), 2);
  EXPECT_EQ(two.LayerGroup(0), 1);
  EXPECT_EQ(two.LayerSlot(0), 0);
  EXPECT_EQ(two.LayerSlot(1), 0);
  EXPECT_EQ(two.LayerSlot(2), 1);
  EXPECT_EQ(two.LayerSlot(3), 1);
  // A block holds one group's layers: half the bytes.
  EXPECT_EQ(KvCacheBlockBytes(two, 2) * 2, KvCacheBlockBytes(one, 2));

  const absl::Status uneven = ValidateKvCacheSpec(Spec(4, {0, 0, 0, 1}));
  EXPECT_EQ(uneven.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(uneven.message().find("group 0 has 3 layers"), std::string::npos) << uneven.message();
  const absl::Status count = ValidateKvCacheSpec(Spec(4, {0, 1}));
  EXPECT_NE(count.message().find("layer_group has 2 entries; expected num_layers = 4"), std::string::npos)
      << count.message();
  EXPECT_FALSE(ValidateKvCacheSpec(Spec(2, {0, -1})).ok());
  EXPECT_FALSE(ValidateKvCacheSpec(Spec(2, {0, 2})).ok());  // group 1 is empty
}

// band_min[n] = max(0, n - band) up to `max_context`.
LayerBands Band(int32_t sink, int32_t band, int32_t max_context = 64) {
  LayerBands l;
  l.sink_tokens = sink;
  l.band_min.assign(size_t(max_context) + 1, 0);
  for (int32_t n = 1; n <= max_context; ++n) l.band_min[size_t(n)] = std::max(0, n - band);
  return l;
}

TEST(KvCacheGroupsTest, LayersThatReadAlikeShareAGroup) {
  // Layers 0 and 3 keep 8 tokens, 1 and 2 keep 32: two groups of two.
  const KvCacheGroups groups = GroupLayersByBands({Band(4, 8), Band(4, 32), Band(0, 32), Band(2, 8)}, 2);
  ASSERT_EQ(groups.num_groups(), 2);
  EXPECT_EQ(groups.layer_group, (std::vector<int32_t>{0, 1, 1, 0}));
  const KvRetention& narrow = *groups.group_retention(0);
  const KvRetention& wide = *groups.group_retention(1);
  EXPECT_EQ(narrow.sink_tokens(), 4);
  EXPECT_EQ(wide.sink_tokens(), 4);
  EXPECT_EQ(narrow.FreeBefore(40), 40 + 1 - 8);
  EXPECT_EQ(wide.FreeBefore(40), 40 + 1 - 32);
  // The union (one group) keeps what the widest layer reads.
  const KvCacheGroups one = GroupLayersByBands({Band(4, 8), Band(4, 32), Band(0, 32), Band(2, 8)}, 1);
  ASSERT_EQ(one.num_groups(), 1);
  EXPECT_EQ(one.group_retention(0)->FreeBefore(40), wide.FreeBefore(40));
  EXPECT_LT(groups.PeakBlocks(60, 4, 4), 2 * one.PeakBlocks(60, 4, 4));
  // Three layers cannot be cut in two: the largest divisor at most 2 is 1.
  EXPECT_EQ(GroupLayersByBands({Band(0, 8), Band(0, 16), Band(0, 32)}, 2).num_groups(), 1);
  // Layers that read alike stay one group, whatever the limit.
  EXPECT_EQ(GroupLayersByBands({Band(0, 8), Band(0, 8)}, 8).num_groups(), 1);
  // Single: one group of every layer.
  const KvCacheGroups dense = KvCacheGroups::Single(3);
  EXPECT_EQ(dense.num_groups(), 1);
  EXPECT_FALSE(dense.any_retention());
  EXPECT_EQ(dense.PeakBlocks(10, 4, 4), 3);
  EXPECT_EQ(dense.DenseBlocks(10, 4), 3);
}

// One decode row per sequence, `groups` groups, each sequence's table in
// group g at blocks offset by 4 * g.
ForwardBatch GroupedDecode(int32_t num_seqs, int32_t groups, int32_t context) {
  ForwardBatch b;
  b.num_kv_groups = groups;
  b.query_start.push_back(0);
  for (int32_t s = 0; s < num_seqs; ++s) {
    b.token_ids.push_back(1);
    b.positions.push_back(context - 1);
    b.query_start.push_back(s + 1);
    b.context_lens.push_back(context);
    b.logits_rows.push_back(s);
  }
  const int32_t blocks = (context + 3) / 4;
  for (int32_t g = 0; g < groups; ++g) {
    b.block_indptr.push_back(int32_t(b.block_ids.size()));
    for (int32_t s = 0; s < num_seqs; ++s) {
      for (int32_t i = 0; i < blocks; ++i) b.block_ids.push_back(g * 8 + s * blocks + i);
      b.block_indptr.push_back(int32_t(b.block_ids.size()));
    }
  }
  for (int32_t g = 0; g < groups; ++g) {
    for (int32_t s = 0; s < num_seqs; ++s) {
      const int32_t last = b.block_ids[size_t(b.group_block_indptr(g)[s] + (context - 1) / 4)];
      b.slots.push_back(last * 4 + (context - 1) % 4);
    }
  }
  return b;
}

TEST(KvCacheGroupsTest, BatchesCarryOneSectionPerGroup) {
  const KvCacheSpec spec = Spec(4, {0, 1, 0, 1});
  ForwardBatch b = GroupedDecode(2, 2, 6);
  ASSERT_TRUE(b.Validate(spec, 10).ok()) << b.Validate(spec, 10);
  EXPECT_EQ(b.Validate(Spec(4, {}), 10).code(), absl::StatusCode::kInvalidArgument);  // 2 groups, cache of 1
  ForwardBatch wrong_slot = b;
  wrong_slot.slots[3] += 1;  // group 1, sequence 1
  EXPECT_FALSE(wrong_slot.Validate(spec, 10).ok());
  ForwardBatch freed = b;
  freed.block_ids[size_t(freed.group_block_indptr(1)[0] + 1)] = kFreedBlock;  // the block position 5 is written into
  EXPECT_FALSE(freed.Validate(spec, 10).ok());

  // Padding keeps each group's section: the real slots and tables, then
  // one-block tables and slot -1 per padding row.
  ForwardBatch padded = b;
  PadDecodeBatch(4, &padded);
  EXPECT_EQ(padded.num_seqs(), 4);
  ASSERT_EQ(padded.slots.size(), 8u);
  ASSERT_EQ(padded.block_indptr.size(), 10u);
  for (int32_t g = 0; g < 2; ++g) {
    const int32_t* slots = padded.group_slots(g);
    EXPECT_EQ(slots[0], b.group_slots(g)[0]);
    EXPECT_EQ(slots[1], b.group_slots(g)[1]);
    EXPECT_EQ(slots[2], -1);
    EXPECT_EQ(slots[3], -1);
    const int32_t* ip = padded.group_block_indptr(g);
    for (int32_t s = 0; s < 2; ++s) {
      EXPECT_TRUE(std::equal(padded.block_ids.begin() + ip[s], padded.block_ids.begin() + ip[s + 1],
                             b.block_ids.begin() + b.group_block_indptr(g)[s]));
    }
    EXPECT_EQ(ip[3] - ip[2], 1);
    EXPECT_EQ(ip[4] - ip[3], 1);
  }
  EXPECT_EQ(padded.block_indptr.back(), int32_t(padded.block_ids.size()));
}

// The same K, V and q through a cache of one group and through a cache of
// two groups (layers 0 and 2 in group 1, their blocks elsewhere): every
// layer's attention output is the same bits.
TEST(KvCacheGroupsTest, CpuBackendAttendsEachLayerThroughItsGroup) {
  const int32_t layers = 4, heads = 2, dim = 8, context = 6;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> kv(size_t(layers) * context * 2 * heads * dim), q(size_t(layers) * heads * dim);
  for (float& x : kv) x = u(rng);
  for (float& x : q) x = u(rng);
  std::vector<std::vector<float>> outputs[2];
  for (int32_t grouped = 0; grouped < 2; ++grouped) {
    CpuBackend cpu;
    const KvCacheSpec spec = Spec(layers, grouped ? std::vector<int32_t>{1, 0, 1, 0} : std::vector<int32_t>{});
    auto cache = cpu.AllocateKvCache(spec);
    ASSERT_TRUE(cache.ok()) << cache.status();
    // A prefill of `context` rows of one sequence, each group its own blocks.
    ForwardBatch b;
    b.num_kv_groups = spec.num_groups();
    b.query_start = {0, context};
    b.context_lens = {context};
    for (int32_t p = 0; p < context; ++p) {
      b.token_ids.push_back(1);
      b.positions.push_back(p);
    }
    b.logits_rows = {context - 1};
    for (int32_t g = 0; g < spec.num_groups(); ++g) {
      b.block_indptr.push_back(int32_t(b.block_ids.size()));
      const std::vector<int32_t> table = {g == 0 ? 3 : 9, g == 0 ? 5 : 2};
      b.block_ids.insert(b.block_ids.end(), table.begin(), table.end());
      b.block_indptr.push_back(int32_t(b.block_ids.size()));
      for (int32_t p = 0; p < context; ++p) b.slots.push_back(table[size_t(p / 4)] * 4 + p % 4);
    }
    ASSERT_TRUE(b.Validate(spec, 10).ok()) << b.Validate(spec, 10);
    ASSERT_TRUE(cpu.BeginStep(b).ok());
    AttentionOptions o;
    o.num_heads = heads;
    o.num_kv_heads = heads;
    o.head_dim = dim;
    o.scale = 0.35f;
    for (int32_t l = 0; l < layers; ++l) {
      Tensor k = cpu.Scratch(0, context, heads * dim);
      Tensor v = cpu.Scratch(1, context, heads * dim);
      Tensor qt = cpu.Scratch(2, context, heads * dim);
      const float* src = kv.data() + size_t(l) * context * 2 * heads * dim;
      for (int32_t r = 0; r < context; ++r) {
        std::memcpy(static_cast<float*>(k.data) + r * k.stride, src + size_t(r) * 2 * heads * dim,
                    sizeof(float) * heads * dim);
        std::memcpy(static_cast<float*>(v.data) + r * v.stride, src + size_t(r) * 2 * heads * dim + heads * dim,
                    sizeof(float) * heads * dim);
        for (int32_t c = 0; c < heads * dim; ++c) {
          static_cast<float*>(qt.data)[r * qt.stride + c] = q[size_t(l) * heads * dim + c] * float(r + 1);
        }
      }
      cpu.WriteKv(k, v, **cache, l);
      outputs[grouped].emplace_back();
    }
    // Attend after every layer's write, so a layer reading another's pool shows.
    for (int32_t l = 0; l < layers; ++l) {
      Tensor qt = cpu.Scratch(2, context, heads * dim);
      for (int32_t r = 0; r < context; ++r) {
        for (int32_t c = 0; c < heads * dim; ++c) {
          static_cast<float*>(qt.data)[r * qt.stride + c] = q[size_t(l) * heads * dim + c] * float(r + 1);
        }
      }
      Tensor out = cpu.Scratch(3, context, heads * dim);
      cpu.Attention(qt, **cache, l, o, out);
      std::vector<float> host(size_t(context) * heads * dim);
      cpu.ReadToHost(out, host.data());
      outputs[grouped][size_t(l)] = host;
    }
    ASSERT_TRUE(cpu.FinishStep().ok());
  }
  for (int32_t l = 0; l < layers; ++l) {
    EXPECT_EQ(outputs[0][size_t(l)], outputs[1][size_t(l)]) << "layer " << l;
    if (l > 0) {
      EXPECT_NE(outputs[0][size_t(l)], outputs[0][size_t(l - 1)]);
    }
  }
}

}  // namespace
}  // namespace tern::runtime
