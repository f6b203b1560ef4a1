#include "runtime/backend/kv_cache_groups.h"

#include <algorithm>
#include <numeric>

#include "runtime/base/check.h"

namespace tern::runtime {

bool KvCacheGroups::any_retention() const {
  return std::any_of(retention.begin(), retention.end(), [](const auto& r) { return r.has_value(); });
}

int64_t KvCacheGroups::PeakBlocks(int64_t tokens, int32_t block_size, int32_t chunk) const {
  int64_t total = 0;
  for (int32_t g = 0; g < num_groups(); ++g) {
    const KvRetention* r = group_retention(g);
    total += r != nullptr ? r->PeakBlocks(tokens, block_size, chunk) : (tokens + block_size - 1) / block_size;
  }
  return total;
}

int64_t KvCacheGroups::DenseBlocks(int64_t tokens, int32_t block_size) const {
  return int64_t(num_groups()) * ((tokens + block_size - 1) / block_size);
}

KvCacheGroups KvCacheGroups::Single(int32_t num_layers, std::optional<KvRetention> retention) {
  KvCacheGroups groups;
  groups.layer_group.assign(size_t(num_layers), 0);
  groups.retention.push_back(std::move(retention));
  return groups;
}

KvCacheGroups GroupLayersByBands(const std::vector<LayerBands>& layers, int32_t max_groups) {
  CHECK(!layers.empty());
  CHECK_GT(max_groups, 0);
  const int32_t num_layers = static_cast<int32_t>(layers.size());
  const size_t length = layers[0].band_min.size();
  CHECK_GE(length, size_t(2));
  for (const LayerBands& l : layers) CHECK_EQ(l.band_min.size(), length);
  const auto combine = [&](const std::vector<int32_t>& members) {
    int32_t sink = 0;
    std::vector<int32_t> band_min = layers[size_t(members[0])].band_min;
    for (int32_t l : members) {
      sink = std::max(sink, layers[size_t(l)].sink_tokens);
      for (size_t n = 1; n < length; ++n) band_min[n] = std::min(band_min[n], layers[size_t(l)].band_min[n]);
    }
    return KvRetention::Create(sink, band_min);
  };
  const bool alike = std::all_of(layers.begin(), layers.end(), [&](const LayerBands& l) {
    return l.sink_tokens == layers[0].sink_tokens && l.band_min == layers[0].band_min;
  });
  int32_t groups = 1;
  if (!alike) {
    for (int32_t g = std::min(max_groups, num_layers); g >= 1; --g) {
      if (num_layers % g == 0) {
        groups = g;
        break;
      }
    }
  }
  std::vector<int32_t> order(static_cast<size_t>(num_layers), 0);
  std::iota(order.begin(), order.end(), 0);
  if (groups > 1) {
    std::vector<int64_t> given_back(size_t(num_layers), 0);
    for (int32_t l = 0; l < num_layers; ++l) {
      for (size_t n = 1; n < length; ++n) given_back[size_t(l)] += layers[size_t(l)].band_min[n];
    }
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return given_back[size_t(a)] > given_back[size_t(b)]; });
  }
  KvCacheGroups out;
  out.layer_group.assign(size_t(num_layers), 0);
  const int32_t per_group = num_layers / groups;
  for (int32_t g = 0; g < groups; ++g) {
    std::vector<int32_t> members(order.begin() + g * per_group, order.begin() + (g + 1) * per_group);
    for (int32_t l : members) out.layer_group[size_t(l)] = g;
    out.retention.emplace_back(combine(members));
  }
  return out;
}

}  // namespace tern::runtime
