// The shape and element type of a paged KV cache (the runtime's side of
// kernels/attention/kv_quant.h, which states the arithmetic).
//
// Element types (a model config's `kv_cache_dtype`):
//   auto  the backend's compute dtype (fp32 on the CPU, fp16/bf16/fp32 on CUDA);
//   fp8   OCP e4m3, one byte per element, a static scale per (layer, kv head)
//         for K and for V: the checkpoint's k_scale / v_scale (or kv_scale)
//         when it has them, else 1.0;
//   int8  one byte per element and one fp32 scale per (token, kv head),
//         computed when the token is appended and stored beside its block.
// A block's bytes follow the element type (KvCacheBlockBytes), so a cache of
// the same memory holds about twice the tokens in fp8 or int8 as in fp16, and
// the runner sizes the block pool (and so the scheduler's admission) by it.
//
// KV-cache groups (docs/architecture.md, "KV-cache groups"): the layers may be
// split into groups of equal layer count that each have their own block
// table per sequence (and their own block lifetime, kv_cache_groups.h). A
// block id then holds the K and V of one group's layers: the cache keeps
// group_layers() per-layer pools, and layer l lives in pool LayerSlot(l) of
// the block ids of its group LayerGroup(l). Every group's blocks have the
// same bytes and come from one pool of num_blocks. With one group (the
// default) block b holds every layer, as a cache without groups does.
// The whole cache has one element type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tern::runtime {

enum class KvCacheDtype : int32_t { kAuto = 0, kFp8E4M3 = 1, kInt8 = 2 };

// "auto" (or empty), "fp8", "int8"; anything else is INVALID_ARGUMENT naming
// the accepted values.
absl::StatusOr<KvCacheDtype> ParseKvCacheDtype(absl::string_view text);
// "auto", "fp8", "int8".
const char* KvCacheDtypeName(KvCacheDtype dtype);

struct KvCacheSpec {
  int32_t num_layers = 0;
  int32_t num_blocks = 0;
  int32_t block_size = 16;  // tokens per block
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  KvCacheDtype dtype = KvCacheDtype::kAuto;
  // fp8 only: static scales of K and V, [num_layers * num_kv_heads]
  // (layer-major); empty means 1.0 everywhere. Finite and positive.
  std::vector<float> k_head_scales, v_head_scales;
  // The KV-cache group of each layer, [num_layers]; empty: one group.
  std::vector<int32_t> layer_group;

  bool quantized() const { return dtype != KvCacheDtype::kAuto; }
  int32_t num_groups() const;
  // Layers a block holds: num_layers / num_groups().
  int32_t group_layers() const { return num_layers / num_groups(); }
  int32_t LayerGroup(int32_t layer) const { return layer_group.empty() ? 0 : layer_group[size_t(layer)]; }
  // The layer's index among the layers of its group (the pool it lives in).
  int32_t LayerSlot(int32_t layer) const;
  // fp8: the scale of (layer, kv_head) for K or V.
  float HeadScale(bool value, int32_t layer, int32_t kv_head) const;
};

// INVALID_ARGUMENT naming the field for a non-positive dimension, fp8
// scales of the wrong count or value, or layer groups that are not a
// partition of the layers into groups 0.. of equal layer count.
absl::Status ValidateKvCacheSpec(const KvCacheSpec& spec);

// Bytes of one block (the group_layers() layers it holds), K and V, scales
// included, for a backend whose compute dtype takes `compute_bytes` bytes an
// element.
size_t KvCacheBlockBytes(const KvCacheSpec& spec, size_t compute_bytes);

}  // namespace tern::runtime
