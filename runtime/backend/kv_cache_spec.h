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
// The whole cache has one element type today; per-layer or per-head groups
// (MoA spans, sliding-window layers) would give each group its own spec.
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

  bool quantized() const { return dtype != KvCacheDtype::kAuto; }
  // fp8: the scale of (layer, kv_head) for K or V.
  float HeadScale(bool value, int32_t layer, int32_t kv_head) const;
};

// INVALID_ARGUMENT naming the field for a non-positive dimension or fp8
// scales of the wrong count or value.
absl::Status ValidateKvCacheSpec(const KvCacheSpec& spec);

// Bytes of one block across all layers, K and V, scales included, for a
// backend whose compute dtype takes `compute_bytes` bytes an element.
size_t KvCacheBlockBytes(const KvCacheSpec& spec, size_t compute_bytes);

}  // namespace tern::runtime
