#include "runtime/backend/kv_cache_spec.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace tern::runtime {

absl::StatusOr<KvCacheDtype> ParseKvCacheDtype(absl::string_view text) {
  if (text.empty() || text == "auto") return KvCacheDtype::kAuto;
  if (text == "fp8") return KvCacheDtype::kFp8E4M3;
  if (text == "int8") return KvCacheDtype::kInt8;
  return absl::InvalidArgumentError(
      absl::StrCat("kv_cache_dtype \"", text, "\" is not one of \"auto\", \"fp8\", \"int8\""));
}

const char* KvCacheDtypeName(KvCacheDtype dtype) {
  switch (dtype) {
    case KvCacheDtype::kFp8E4M3:
      return "fp8";
    case KvCacheDtype::kInt8:
      return "int8";
    case KvCacheDtype::kAuto:
      break;
  }
  return "auto";
}

float KvCacheSpec::HeadScale(bool value, int32_t layer, int32_t kv_head) const {
  const std::vector<float>& scales = value ? v_head_scales : k_head_scales;
  return scales.empty() ? 1.0f : scales[size_t(layer) * num_kv_heads + kv_head];
}

int32_t KvCacheSpec::num_groups() const {
  int32_t groups = 1;
  for (int32_t g : layer_group) groups = std::max(groups, g + 1);
  return groups;
}

int32_t KvCacheSpec::LayerSlot(int32_t layer) const {
  if (layer_group.empty()) return layer;
  const int32_t group = layer_group[size_t(layer)];
  int32_t slot = 0;
  for (int32_t l = 0; l < layer; ++l) slot += layer_group[size_t(l)] == group ? 1 : 0;
  return slot;
}

absl::Status ValidateKvCacheSpec(const KvCacheSpec& spec) {
  if (spec.num_layers <= 0 || spec.num_blocks <= 0 || spec.block_size <= 0 || spec.num_kv_heads <= 0 ||
      spec.head_dim <= 0) {
    return absl::InvalidArgumentError("kv cache spec has a non-positive dimension");
  }
  const size_t count = size_t(spec.num_layers) * spec.num_kv_heads;
  for (const auto* scales : {&spec.k_head_scales, &spec.v_head_scales}) {
    const char* name = scales == &spec.k_head_scales ? "k_head_scales" : "v_head_scales";
    if (scales->empty()) continue;
    if (spec.dtype != KvCacheDtype::kFp8E4M3) {
      return absl::InvalidArgumentError(absl::StrCat("kv cache spec: ", name, " are for an fp8 cache only"));
    }
    if (scales->size() != count) {
      return absl::InvalidArgumentError(absl::StrCat("kv cache spec: ", name, " has ", scales->size(),
                                                     " entries; expected num_layers * num_kv_heads = ", count));
    }
    for (size_t i = 0; i < count; ++i) {
      if (!std::isfinite((*scales)[i]) || (*scales)[i] <= 0.0f) {
        return absl::InvalidArgumentError(absl::StrCat("kv cache spec: ", name, "[", i, "] = ", (*scales)[i],
                                                       "; expected a finite positive scale"));
      }
    }
  }
  if (!spec.layer_group.empty()) {
    if (spec.layer_group.size() != size_t(spec.num_layers)) {
      return absl::InvalidArgumentError(absl::StrCat("kv cache spec: layer_group has ", spec.layer_group.size(),
                                                     " entries; expected num_layers = ", spec.num_layers));
    }
    const int32_t groups = spec.num_groups();
    std::vector<int32_t> count(size_t(groups), 0);
    for (int32_t g : spec.layer_group) {
      if (g < 0) return absl::InvalidArgumentError(absl::StrCat("kv cache spec: layer_group holds ", g));
      ++count[size_t(g)];
    }
    for (int32_t g = 0; g < groups; ++g) {
      if (count[size_t(g)] * groups != spec.num_layers) {
        return absl::InvalidArgumentError(absl::StrCat("kv cache spec: group ", g, " has ", count[size_t(g)],
                                                       " layers; every group needs num_layers / groups = ",
                                                       double(spec.num_layers) / groups));
      }
    }
  }
  return absl::OkStatus();
}

size_t KvCacheBlockBytes(const KvCacheSpec& spec, size_t compute_bytes) {
  const size_t elements = size_t(spec.block_size) * spec.num_kv_heads * spec.head_dim;
  size_t per_layer_side = spec.quantized() ? elements : elements * compute_bytes;
  if (spec.dtype == KvCacheDtype::kInt8) per_layer_side += size_t(spec.block_size) * spec.num_kv_heads * sizeof(float);
  return size_t(2) * spec.group_layers() * per_layer_side;
}

}  // namespace tern::runtime
