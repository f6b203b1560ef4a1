// KvCacheGroups: which layers share a block table and a block lifetime
// (docs/architecture.md, "KV-cache groups"). Each group has its own block
// table per sequence and its own KvRetention (or none: every token kept), so
// the scheduler frees, per group, the blocks that no head of the group's
// layers reads again, rather than only those no layer at all reads. All
// groups have the same layer count, so their blocks have the same bytes and
// come from one pool (KvCacheSpec::layer_group says where each layer lives).
//
//   dense model              one group, no retention: today's cache exactly;
//   sliding-window model     one group, KvRetention::SlidingWindow;
//   MoA plan                 layers ordered by how much of the context they
//                            give back and cut into groups of equal count,
//                            each group's retention the earliest key any
//                            head of its layers reads (GroupLayersByBands).
//
// Immutable after it is built; shared by the runner and the scheduler.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "runtime/backend/kv_retention.h"

namespace tern::runtime {

// The most groups a model's layers are cut into automatically: more groups
// free more, but every group is one more block table per sequence in each
// step's metadata.
inline constexpr int32_t kDefaultMaxKvCacheGroups = 8;

struct KvCacheGroups {
  // [num_layers]: the group of each layer.
  std::vector<int32_t> layer_group;
  // [num_groups]: what the group's layers read; nullopt keeps every token.
  std::vector<std::optional<KvRetention>> retention;

  int32_t num_groups() const { return static_cast<int32_t>(retention.size()); }
  // Null when the group keeps every token.
  const KvRetention* group_retention(int32_t group) const {
    const auto& r = retention[size_t(group)];
    return r.has_value() ? &*r : nullptr;
  }
  // Whether some group frees tokens.
  bool any_retention() const;
  // The blocks one sequence holds at most, over all groups, while it grows
  // to `tokens` tokens in steps of at most `chunk` (KvRetention::PeakBlocks
  // per group with a retention, every block of the others).
  int64_t PeakBlocks(int64_t tokens, int32_t block_size, int32_t chunk) const;
  // Blocks one sequence of `tokens` tokens holds in every group when nothing
  // is freed.
  int64_t DenseBlocks(int64_t tokens, int32_t block_size) const;

  // All layers in one group with `retention` (none: every token kept).
  static KvCacheGroups Single(int32_t num_layers, std::optional<KvRetention> retention = std::nullopt);
};

// One layer's reads: the longest sink of its heads and, for each length n
// (index n, 0 unused), the earliest non-sink key any of its heads reads.
struct LayerBands {
  int32_t sink_tokens = 0;
  std::vector<int32_t> band_min;  // [max_context + 1]
};

// Groups `layers` (all of one max_context) into the largest count of equal
// groups that divides the layer count and is at most `max_groups`: layers
// ordered by how much they give back (the sum over lengths of their
// earliest key read, larger first; ties by layer index) and cut in order,
// each group's retention built from the minimum band start of its layers
// and their longest sink. When every layer reads alike, one group.
KvCacheGroups GroupLayersByBands(const std::vector<LayerBands>& layers, int32_t max_groups);

}  // namespace tern::runtime
