// The fp8 KV cache's static scales as a checkpoint stores them (vLLM's and
// llm-compressor's layout): per decoder layer l, either
//   model.layers.<l>.self_attn.k_scale and .v_scale, or
//   model.layers.<l>.self_attn.kv_scale (one scale for both),
// each a scalar ([] or [1]: every kv head) or [num_key_value_heads] (one
// per kv head). The stored value dequantizes: x = float(e4m3) * scale.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/model/hf_config.h"
#include "runtime/model/safetensors.h"

namespace tern::runtime {

struct KvCacheScales {
  // [num_layers * num_kv_heads] layer-major; both empty when the checkpoint
  // has no KV scales.
  std::vector<float> k, v;
  bool present() const { return !k.empty(); }
};

// Reads the scales of every layer. INVALID_ARGUMENT naming the tensor for a
// wrong shape, a non-float dtype or a value that is not finite and
// positive, or when some layers have scales and others do not.
absl::StatusOr<KvCacheScales> ReadKvCacheScales(const WeightStore& store, const HfConfig& config);

}  // namespace tern::runtime
