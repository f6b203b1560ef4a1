#include "runtime/model/kv_cache_scales.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "runtime/model/dtype.h"

namespace tern::runtime {
namespace {

// Appends num_kv_heads scales read from `name` to `out`.
absl::Status AppendScales(const WeightStore& store, const std::string& name, int64_t num_kv_heads,
                          std::vector<float>* out) {
  auto view = store.Get(name);
  if (!view.ok()) return view.status();
  const int64_t n = view->numel();
  const bool scalar = view->shape.empty() || (view->shape.size() == 1 && view->shape[0] == 1);
  const bool per_head = view->shape.size() == 1 && view->shape[0] == num_kv_heads;
  if (!scalar && !per_head) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" has shape ", view->ShapeString(),
                                                   "; expected [], [1] or [num_key_value_heads] = [", num_kv_heads,
                                                   "]"));
  }
  if (view->dtype != DType::kF32 && view->dtype != DType::kF16 && view->dtype != DType::kBF16) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor \"", name, "\" has dtype ", DTypeSafetensorsName(view->dtype), "; expected F32, F16 or BF16"));
  }
  std::vector<float> values(static_cast<size_t>(n));
  ConvertToFloat(view->dtype, view->data, values.size(), values.data());
  for (float value : values) {
    if (!std::isfinite(value) || value <= 0.0f) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor \"", name, "\" holds ", value, "; expected finite positive KV cache scales"));
    }
  }
  for (int64_t h = 0; h < num_kv_heads; ++h) out->push_back(values[scalar ? 0 : h]);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<KvCacheScales> ReadKvCacheScales(const WeightStore& store, const HfConfig& config) {
  KvCacheScales scales;
  int layers_with = 0;
  std::string first_missing;
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    const std::string base = absl::StrCat("model.layers.", l, ".self_attn.");
    const bool split = store.Contains(base + "k_scale") || store.Contains(base + "v_scale");
    const bool joint = store.Contains(base + "kv_scale");
    if (!split && !joint) {
      if (first_missing.empty()) first_missing = base + "k_scale";
      continue;
    }
    ++layers_with;
    const std::string k_name = split ? base + "k_scale" : base + "kv_scale";
    const std::string v_name = split ? base + "v_scale" : base + "kv_scale";
    if (absl::Status status = AppendScales(store, k_name, config.num_key_value_heads, &scales.k); !status.ok()) {
      return status;
    }
    if (absl::Status status = AppendScales(store, v_name, config.num_key_value_heads, &scales.v); !status.ok()) {
      return status;
    }
  }
  if (layers_with > 0 && layers_with < config.num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache scales: ", layers_with, " of ",
                                                   config.num_hidden_layers, " layers have them; tensor \"",
                                                   first_missing, "\" (or kv_scale) is missing"));
  }
  return scales;
}

}  // namespace tern::runtime
